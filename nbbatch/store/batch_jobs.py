"""Batch jobs in the ledger: each job, the images it holds, and which job each image is in.

A job's lifecycle here is nbbatch's own, apart from the provider's states:

    creating  recorded with its images; the create call may or may not have reached the API
    live      the provider named it (`name`); `state` is what it last said
    closed    collected (results saved, the rest back to pending) or never created

`images.batch_job` names the job an image is in while that job is open; an image is given to
a job only when it is pending and in none (one transaction), so it is never in two live jobs.
Every public write is one transaction, as in the rest of the ledger.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from nbbatch.errors import LedgerError
from nbbatch.store.records import IMAGE_COLUMNS, IMAGES, ImageRow, Key, image_row

_JOB_COLUMNS = (
    "job_id, provider, model, display_name, name, phase, state, created_at, submitted_at,"
    " updated_at, closed_at, request_count, succeeded, failed, input_file, outcome, error"
)
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: int
    provider: str
    model: str
    display_name: str
    name: str | None
    phase: str  # creating | live | closed
    state: str | None
    created_at: float
    submitted_at: float | None
    updated_at: float | None
    closed_at: float | None
    request_count: int
    succeeded: int
    failed: int
    input_file: str | None
    outcome: str | None
    error: str | None

    @property
    def open(self) -> bool:
        return self.phase != "closed"


@dataclass(frozen=True, slots=True)
class JobMember:
    position: int
    key: Key
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Membership:
    """What status shows for an image in an open job."""

    job: str  # the provider's job name, or our display name while it is being created
    state: str | None
    submitted_at: float | None


def display_name(out_name: str) -> str:
    """A job identity unique to this output folder and job, as listed by the provider."""
    slug = _SLUG.sub("-", out_name).strip("-")[:32] or "out"
    return f"nbbatch-{slug}-{secrets.token_hex(6)}"


class BatchJobsView:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def jobs(self, *, open_only: bool = False) -> list[JobRecord]:
        where = " WHERE phase <> 'closed'" if open_only else ""
        rows = self._conn.execute(f"SELECT {_JOB_COLUMNS} FROM batch_jobs{where} ORDER BY job_id")
        return [JobRecord(*row) for row in rows]

    def job(self, job_id: int) -> JobRecord:
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise LedgerError(f"batch job {job_id} is not in the ledger")
        return JobRecord(*row)

    def members(self, job_id: int) -> list[JobMember]:
        rows = self._conn.execute(
            "SELECT position, id, idx, fingerprint FROM batch_requests WHERE job_id = ?"
            " ORDER BY position", (job_id,))
        return [JobMember(position, (id_, idx), fp) for position, id_, idx, fp in rows]

    def holds(self, job_id: int, key: Key, fingerprint: str) -> bool:
        """Whether `key` still waits in `job_id` for its result: pending, in that job, and
        still asking for what was sent (`fingerprint`)."""
        row = self._conn.execute(
            "SELECT 1 FROM images WHERE id = ? AND idx = ? AND batch_job = ?"
            " AND status = 'pending' AND fingerprint = ?", (*key, job_id, fingerprint)
        ).fetchone()
        return row is not None

    def submittable(self) -> list[ImageRow]:
        """Pending images of the manifest that are in no open job, in manifest order."""
        rows = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1 AND status = 'pending'"
            " AND batch_job IS NULL ORDER BY images.position, idx")
        return [image_row(row) for row in rows]

    def in_open_jobs(self) -> int:
        """Images waiting in open jobs."""
        (n,) = self._conn.execute(
            "SELECT count(*) FROM images WHERE batch_job IS NOT NULL AND status = 'pending'"
        ).fetchone()
        return int(n)

    def memberships(self) -> Iterator[tuple[Key, Membership]]:
        """Every pending image in an open job, with the job status shows for it."""
        rows = self._conn.execute(
            "SELECT i.id, i.idx, coalesce(j.name, j.display_name), j.state, j.submitted_at"
            " FROM images i JOIN batch_jobs j ON j.job_id = i.batch_job"
            " WHERE i.status = 'pending' AND j.phase <> 'closed'")
        for id_, idx, job, state, submitted in rows:
            yield (id_, idx), Membership(job, state, submitted)


Transaction = Callable[[], AbstractContextManager[None]]


class BatchJobs(BatchJobsView):
    """The writes a batch run makes. `transaction` is the ledger's own BEGIN IMMEDIATE."""

    def __init__(self, conn: sqlite3.Connection, transaction: Transaction) -> None:
        super().__init__(conn)
        self._transaction = transaction

    def record_job(self, *, provider: str, model: str, display: str,
                   images: Iterable[tuple[Key, str]]) -> int:
        """Record a job and give it `images` ((key, fingerprint), in request order) before
        anything is sent. LedgerError if one of them is not pending or already in a job."""
        now = time.time()
        members = list(images)
        with self._transaction():
            cur = self._conn.execute(
                "INSERT INTO batch_jobs (provider, model, display_name, created_at, updated_at,"
                " request_count) VALUES (?, ?, ?, ?, ?, ?)",
                (provider, model, display, now, now, len(members)))
            job_id = cur.lastrowid
            assert job_id is not None
            self._conn.executemany(
                "INSERT INTO batch_requests VALUES (?, ?, ?, ?, ?)",
                ((job_id, n, *key, fp) for n, (key, fp) in enumerate(members)))
            taken = self._conn.execute(
                "UPDATE images SET batch_job = ? WHERE status = 'pending' AND batch_job IS NULL"
                " AND EXISTS (SELECT 1 FROM batch_requests r WHERE r.job_id = ?"
                " AND r.id = images.id AND r.idx = images.idx)", (job_id, job_id)).rowcount
            if taken != len(members):
                raise LedgerError(f"{len(members) - taken} of the images for a new batch job "
                                  "are not pending or already in a job")
        return job_id

    def set_input_file(self, job_id: int, name: str) -> None:
        with self._transaction():
            self._conn.execute("UPDATE batch_jobs SET input_file = ?, updated_at = ?"
                               " WHERE job_id = ?", (name, time.time(), job_id))

    def mark_live(self, job_id: int, *, name: str, state: str | None,
                  submitted_at: float | None = None) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE batch_jobs SET name = ?, state = ?, phase = 'live',"
                " submitted_at = coalesce(?, submitted_at, ?), updated_at = ?"
                " WHERE job_id = ? AND phase <> 'closed'",
                (name, state, submitted_at, time.time(), time.time(), job_id))

    def update_state(self, job_id: int, *, state: str, succeeded: int, failed: int) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE batch_jobs SET state = ?, succeeded = ?, failed = ?, updated_at = ?"
                " WHERE job_id = ?", (state, succeeded, failed, time.time(), job_id))

    def release(self, job_id: int, key: Key) -> None:
        """`key` has had its result from `job_id` (saved, failed or back to pending)."""
        with self._transaction():
            self._conn.execute("UPDATE images SET batch_job = NULL WHERE id = ? AND idx = ?"
                               " AND batch_job = ?", (*key, job_id))

    def close(self, job_id: int, *, outcome: str, error: str | None,
              kind: str, message: str) -> int:
        """Close the job: every image still waiting in it goes back to pending with
        `kind`/`message` as its error. Returns how many did."""
        now = time.time()
        with self._transaction():
            back = self._conn.execute(
                "UPDATE images SET batch_job = NULL, error_kind = ?, error_message = ?,"
                " updated_at = ? WHERE batch_job = ? AND status = 'pending'",
                (kind, message, now, job_id)).rowcount
            self._conn.execute("UPDATE images SET batch_job = NULL WHERE batch_job = ?",
                               (job_id,))
            self._conn.execute(
                "UPDATE batch_jobs SET phase = 'closed', outcome = ?, error = ?, closed_at = ?,"
                " updated_at = ? WHERE job_id = ?", (outcome, error, now, now, job_id))
        return back
