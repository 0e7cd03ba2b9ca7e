"""The results ledger: `OUT/ledger.db`, the source of truth for status and resume.

SQLite in WAL mode with synchronous=NORMAL: every committed transaction survives a crash or
`kill -9` of the process (only a power cut may lose the last few). Every public write method is
one transaction, so a kill between two calls never leaves half a record.

Saving an image is two steps around the file's rename into place: `begin_save` records the
intent (file, hash, cost) while the image is still pending, `mark_done` turns it into done.
An intent found at start-up (`saves_in_progress`) means a crash came in between; the file on
disk decides whether it is completed (`mark_done`) or forgotten (`clear_save`).

`LedgerView` is what reading commands need; `Ledger` adds the writes a run makes. One ledger
object is used from one thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from nbbatch.errors import LedgerError
from nbbatch.model import Item
from nbbatch.store.batch_jobs import BatchJobs, BatchJobsView
from nbbatch.store.items import load_items, record_items
from nbbatch.store.migrations import migrate
from nbbatch.store.records import (
    ATTEMPT_COLUMNS,
    IMAGE_COLUMNS,
    IMAGES,
    Attempt,
    CostSummary,
    Counts,
    ImageRow,
    Key,
    PlannedImage,
    RunRecord,
    SaveIntent,
    Spend,
    SyncResult,
    attempt_row,
    image_row,
)
from nbbatch.store.sync import sync_images


def _require(found: bool, key: Key, problem: str = "is not in the ledger") -> None:
    if not found:
        raise LedgerError(f"image {key[0]} #{key[1]} {problem}")


class LedgerView:
    """The ledger's contents: images, attempts, runs, counts and costs."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open `path`, creating and migrating it as needed. The folder must exist."""
        path = Path(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc):
                raise LedgerError(
                    f"{path} is not an nbbatch ledger (not a readable SQLite database); "
                    "move it away or choose another output folder"
                ) from exc
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        except LedgerError:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last_run(self) -> RunRecord | None:
        row = self._conn.execute(
            "SELECT run_id, started_at, finished_at, manifest, options, cwd, pid, exit_code,"
            " settings FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run_id, started, finished, manifest, options, cwd, pid, code, settings = row
        return RunRecord(run_id, started, finished, manifest, json.loads(options), cwd, pid, code,
                         json.loads(settings) if settings else None)

    def items(self) -> list[Item]:
        """What the items of the manifest asked for, in manifest order."""
        return list(load_items(self._conn))

    def pending(self) -> list[ImageRow]:
        rows = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1 AND status = 'pending'"
            " ORDER BY images.position, idx"
        )
        return [image_row(row) for row in rows]

    def rows(self, status: str | None = None, *,
             attention_first: bool = False) -> Iterator[ImageRow]:
        """Every image in the manifest (or those with `status`), in manifest order, streamed
        in chunks; with `attention_first`, failed ones first, then pending, then done."""
        where = "" if status is None else " AND images.status = ?"
        first = "images.status = 'done', images.status = 'pending', " if attention_first else ""
        cur = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1{where}"
            f" ORDER BY {first}images.position, idx", () if status is None else (status,)
        )
        try:
            while chunk := cur.fetchmany(1000):
                yield from map(image_row, chunk)
        finally:
            cur.close()

    def states(self) -> dict[Key, tuple[str, str]]:
        """(fingerprint, status) of every image ever recorded: what `plan` compares against,
        without building a full row per image."""
        rows = self._conn.execute("SELECT id, idx, fingerprint, status FROM images")
        return {(id_, idx): (fingerprint, status) for id_, idx, fingerprint, status in rows}

    def done_files(self) -> Iterator[tuple[Key, str | None, int | None]]:
        """(key, file, bytes) of every done image in the manifest."""
        rows = self._conn.execute(
            "SELECT id, idx, file, bytes FROM images WHERE in_manifest = 1 AND status = 'done'")
        for id_, idx, file, size in rows:
            yield (id_, idx), file, size

    def needing_attention(self, limit: int) -> list[ImageRow]:
        """The first `limit` failed images, then pending ones, in manifest order."""
        rows = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1"
            " AND images.status <> 'done'"
            " ORDER BY images.status = 'pending', images.position, idx LIMIT ?", (limit,))
        return [image_row(row) for row in rows]

    def counts(self) -> Counts:
        row = self._conn.execute(
            "SELECT count(*), total(status = 'done'), total(status = 'failed'),"
            " total(status = 'pending') FROM images WHERE in_manifest = 1"
        ).fetchone()
        return Counts(*(int(n) for n in row))

    def counts_by_provider(self) -> dict[str, Counts]:
        """Done and failed images per provider that made them; pending ones under ""."""
        rows = self._conn.execute(
            "SELECT CASE WHEN status = 'pending' THEN '' ELSE coalesce(provider, '') END AS p,"
            " count(*), total(status = 'done'), total(status = 'failed'),"
            " total(status = 'pending') FROM images WHERE in_manifest = 1 GROUP BY p ORDER BY p"
        )
        return {p: Counts(*(int(n) for n in rest)) for p, *rest in rows}

    def cost_summary(self) -> CostSummary:
        """What the done images of the manifest cost, what every run on this folder spent,
        and what the pending images are expected to cost."""
        on_disk, done = self._conn.execute(
            "SELECT total(cost_usd), count(*) FROM images WHERE in_manifest = 1"
            " AND status = 'done'"
        ).fetchone()
        (remaining,) = self._conn.execute(
            "SELECT total(estimate_usd) FROM images WHERE in_manifest = 1 AND status = 'pending'"
        ).fetchone()
        return CostSummary(on_disk, done, self.spend(), remaining)

    def spend(self) -> Spend:
        """Money every run on this folder spent (see `_spend`)."""
        return self._spend("", ())

    def _spend(self, where: str, params: tuple[Any, ...]) -> Spend:
        """Successful attempts at their cost, and the attempts that may have been billed
        (interrupted, or lost after sending), among those `where` selects."""
        rows = self._conn.execute(
            "SELECT CASE WHEN outcome = 'success' THEN 'billed' WHEN outcome = 'interrupted'"
            " THEN 'interrupted' ELSE 'lost' END AS kind, count(*), total(cost_usd)"
            " FROM attempts WHERE (outcome = 'success' OR possibly_billed = 1)" + where +
            " GROUP BY kind", params,
        ).fetchall()
        found = {kind: (int(n), usd) for kind, n, usd in rows}
        (_, billed), (interrupted, interrupted_usd), (lost, lost_usd) = (
            found.get(kind, (0, 0.0)) for kind in ("billed", "interrupted", "lost"))
        return Spend(billed, interrupted, interrupted_usd, lost, lost_usd)

    def attempts(self, key: Key) -> list[Attempt]:
        rows = self._conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ? AND idx = ?"
            " ORDER BY attempt_id",
            key,
        )
        return [attempt_row(row) for row in rows]

    def saves_in_progress(self) -> list[SaveIntent]:
        rows = self._conn.execute("SELECT id, idx, file, sha256 FROM save_intents ORDER BY id, idx")
        return [SaveIntent(*row) for row in rows]

    @property
    def batch(self) -> BatchJobsView:
        """Batch jobs and their images (store/batch_jobs.py)."""
        return BatchJobsView(self._conn)

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


class Ledger(LedgerView):
    """The ledger as a run writes it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, path)
        self._run_id: int | None = None  # stamped on attempts recorded after start_run

    @property
    def batch(self) -> BatchJobs:
        return BatchJobs(self._conn, self._transaction)

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """One statement as its own committed transaction."""
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger write failed ({self.path}): {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"ledger write failed ({self.path}): {exc}") from exc
            raise

    def start_run(self, *, manifest: str, options: dict, cwd: str, pid: int,
                  settings: dict | None = None) -> int:
        cur = self._write(
            "INSERT INTO runs (started_at, manifest, options, cwd, pid, settings)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), manifest, json.dumps(options), cwd, pid,
             json.dumps(settings) if settings is not None else None),
        )
        assert cur.lastrowid is not None
        self._run_id = cur.lastrowid
        return cur.lastrowid

    def run_spend(self) -> Spend:
        """Money spent by the attempts this ledger object recorded (this run)."""
        return self._spend(" AND run_id IS ?", (self._run_id,))

    def finish_run(self, run_id: int, exit_code: int) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, exit_code = ? WHERE run_id = ?",
            (time.time(), int(exit_code), run_id),
        )

    def sync(self, images: Iterable[PlannedImage], items: Sequence[Item] = ()) -> SyncResult:
        """Make the ledger match the manifest: what each item asks for (items.py), then its
        images (sync.py), in one transaction."""
        with self._transaction():
            record_items(self._conn, items)
            return sync_images(self._conn, images)

    def reopen(self, problems: Iterable[tuple[Key, str]]) -> int:
        """Done images whose file is not as recorded go back to pending, saying why."""
        with self._transaction():
            return sum(self._conn.execute(
                "UPDATE images SET status = 'pending', error_kind = 'missing',"
                " error_message = ?, updated_at = ? WHERE id = ? AND idx = ?"
                " AND status = 'done'", (f"{why}: made again", time.time(), *key)).rowcount
                for key, why in problems)

    def retry_failed(self) -> int:
        """Failed images in the manifest go back to pending, error cleared. Call after sync."""
        return self._write(
            "UPDATE images SET status = 'pending', error_kind = NULL, error_message = NULL,"
            " updated_at = ? WHERE status = 'failed' AND in_manifest = 1",
            (time.time(),),
        ).rowcount

    def record_attempt(self, key: Key, attempt: Attempt) -> None:
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE images SET attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND idx = ?",
                (time.time(), *key),
            )
            _require(cur.rowcount > 0, key)
            self._conn.execute(
                f"INSERT INTO attempts (id, idx, run_id, {ATTEMPT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, self._run_id, attempt.started_at, attempt.provider, attempt.model,
                 attempt.outcome, attempt.http_status, attempt.latency, attempt.error,
                 int(attempt.possibly_billed), attempt.cost_usd),
            )

    def begin_save(self, key: Key, *, file: str, sha256: str, bytes: int, provider: str,
                   model: str, cost_usd: float, usage: dict | None,
                   size: tuple[int, int] | None = None, shape_note: str | None = None) -> None:
        """Record the intent to save before the file is renamed into place (still pending).
        `size`: the image's (width, height); `shape_note`: how it differs from what was asked."""
        width, height = size or (None, None)
        with self._transaction():
            row = self._conn.execute("SELECT 1 FROM images WHERE id = ? AND idx = ?", key)
            _require(row.fetchone() is not None, key)
            self._conn.execute(
                "INSERT OR REPLACE INTO save_intents (id, idx, file, sha256, bytes, provider,"
                " model, cost_usd, usage, width, height, shape_note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, file, sha256, bytes, provider, model, cost_usd,
                 json.dumps(usage) if usage is not None else None, width, height, shape_note),
            )

    def mark_done(self, key: Key) -> None:
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE images SET status = 'done', provider = s.provider, model = s.model,"
                " file = s.file, sha256 = s.sha256, bytes = s.bytes, cost_usd = s.cost_usd,"
                " usage = s.usage, width = s.width, height = s.height,"
                " shape_note = s.shape_note, error_kind = NULL, error_message = NULL,"
                " updated_at = ?"
                " FROM save_intents s WHERE s.id = images.id AND s.idx = images.idx"
                " AND images.id = ? AND images.idx = ?",
                (time.time(), *key),
            )
            _require(cur.rowcount > 0, key, "has no save in progress")
            self._conn.execute("DELETE FROM save_intents WHERE id = ? AND idx = ?", key)

    def clear_save(self, key: Key) -> None:
        self._write("DELETE FROM save_intents WHERE id = ? AND idx = ?", key)

    # A done image stays done: only a fingerprint change (sync) reopens it, so a late
    # failure or interruption reported for it is ignored.

    def mark_failed(self, key: Key, *, kind: str, message: str, provider: str | None,
                    model: str | None) -> None:
        self._write(
            "UPDATE images SET status = 'failed', error_kind = ?, error_message = ?,"
            " provider = ?, model = ?, updated_at = ? WHERE id = ? AND idx = ?"
            " AND status <> 'done'",
            (kind, message, provider, model, time.time(), *key),
        )

    def mark_pending(self, key: Key, *, kind: str | None, message: str | None) -> None:
        self._write(
            "UPDATE images SET status = 'pending', error_kind = ?, error_message = ?,"
            " updated_at = ? WHERE id = ? AND idx = ? AND status <> 'done'",
            (kind, message, time.time(), *key),
        )
