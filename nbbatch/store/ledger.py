"""The results ledger: `OUT/ledger.db`, the source of truth for status and resume.

SQLite in WAL mode with synchronous=NORMAL: every committed transaction survives a crash or
`kill -9` of the process (only a power cut may lose the last few). Every public write method is
one transaction, so a kill between two calls never leaves half a record.

An attempt is recorded before its request is sent, as interrupted and possibly billed, and
updated with what came of it: a kill in between leaves exactly that record behind.

Saving an image is two steps around the file's rename into place: `begin_save` records the
intent (file, hash, cost) while the image is still pending, `mark_done` turns it into done.
An intent found at start-up (`saves_in_progress`) means a crash came in between; the file on
disk decides whether it is completed (`mark_done`) or forgotten (`clear_save`). Every file
placed is kept in `files` with its owner, so no other image is ever written over it.

`LedgerView` (view.py) is what reading commands need; `Ledger` adds the writes a run makes.
One ledger object is used from one thread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbbatch.errors import LedgerError
from nbbatch.model import Item
from nbbatch.store.batch_jobs import BatchJobs
from nbbatch.store.connection import ledger_error
from nbbatch.store.items import record_items
from nbbatch.store.records import (
    ATTEMPT_COLUMNS,
    Attempt,
    Key,
    PlannedImage,
    Spend,
    SyncResult,
)
from nbbatch.store.sync import sync_images
from nbbatch.store.view import LedgerView, reads

__all__ = ["Ledger", "LedgerView", "reads"]


def _require(found: bool, key: Key, problem: str = "is not in the ledger") -> None:
    if not found:
        raise LedgerError(f"image {key[0]} #{key[1]} {problem}")


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
            raise ledger_error(exc, self.path, writing=True) from exc

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
                with contextlib.suppress(sqlite3.Error):  # SQLite rolls back a failed commit
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise ledger_error(exc, self.path, writing=True) from exc
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
        return self.spend(" AND run_id IS ?", (self._run_id,))

    def finish_run(self, run_id: int, exit_code: int) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, exit_code = ? WHERE run_id = ?",
            (time.time(), int(exit_code), run_id),
        )

    def sync(self, images: Iterable[PlannedImage], items: Sequence[Item] = (), *,
             digest: str | None = None) -> SyncResult:
        """Make the ledger match the manifest: what each item asks for (items.py), then its
        images (sync.py), in one transaction. `digest`, when the caller has one, stands for
        `images` and `items`: if the last sync left it, `images` is not even read."""
        with self._transaction():
            record_items(self._conn, items, digest)
            return sync_images(self._conn, images, digest)

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

    def record_attempt(self, key: Key, attempt: Attempt) -> int:
        """Record one attempt (a run records it before sending, as interrupted and possibly
        billed, and updates it after); returns its id."""
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE images SET attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND idx = ?",
                (time.time(), *key),
            )
            _require(cur.rowcount > 0, key)
            cur = self._conn.execute(
                f"INSERT INTO attempts (id, idx, run_id, {ATTEMPT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, self._run_id, attempt.started_at, attempt.provider, attempt.model,
                 attempt.outcome, attempt.http_status, attempt.latency, attempt.error,
                 int(attempt.possibly_billed), attempt.cost_usd),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def update_attempt(self, attempt_id: int, attempt: Attempt) -> None:
        """What came of an attempt recorded before it was sent."""
        self._write(
            "UPDATE attempts SET model = ?, outcome = ?, http_status = ?, latency = ?, error = ?,"
            " possibly_billed = ?, cost_usd = ? WHERE attempt_id = ?",
            (attempt.model, attempt.outcome, attempt.http_status, attempt.latency, attempt.error,
             int(attempt.possibly_billed), attempt.cost_usd, attempt_id),
        )

    def flag_billed(self, attempt_id: int) -> None:
        """A successful attempt whose image could not be saved: paid for, nothing to show."""
        self._write("UPDATE attempts SET possibly_billed = 1 WHERE attempt_id = ?", (attempt_id,))

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
            self._conn.execute(
                "INSERT OR REPLACE INTO files (name, id, idx, sha256) SELECT file, id, idx,"
                " sha256 FROM save_intents WHERE id = ? AND idx = ?", key)
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
