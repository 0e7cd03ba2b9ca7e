"""The results ledger: `OUT/ledger.db`, the source of truth for status and resume.

SQLite in WAL mode with synchronous=NORMAL: every committed transaction survives a crash or
`kill -9` of the process (only a power cut may lose the last few). Every public write method is
one transaction, so a kill between two calls never leaves half a record.

Saving an image is two steps around the file's rename into place: `begin_save` records the
intent (file, hash, cost) while the image is still pending, `mark_done` turns it into done.
An intent found at start-up (`saves_in_progress`) means a crash came in between; the file on
disk decides whether it is completed (`mark_done`) or forgotten (`clear_save`).

The schema version lives in `PRAGMA user_version`; MIGRATIONS[:N] build version N. The file is
stamped with `PRAGMA application_id` so a foreign SQLite database is refused, not modified.
One Ledger is used from one thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbbatch.errors import LedgerError

Key = tuple[str, int]  # (item id, index 1..count)

APPLICATION_ID = 0x6E626231  # "nbb1"

MIGRATIONS: list[str] = [
    # 1: the initial schema.
    """
    CREATE TABLE runs (
        run_id      INTEGER PRIMARY KEY,
        started_at  REAL NOT NULL,
        finished_at REAL,
        manifest    TEXT NOT NULL,
        options     TEXT NOT NULL,          -- JSON: effective settings, no secrets
        cwd         TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        exit_code   INTEGER
    );
    CREATE TABLE images (
        id            TEXT NOT NULL,
        idx           INTEGER NOT NULL,
        fingerprint   TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'done', 'failed')),
        in_manifest   INTEGER NOT NULL DEFAULT 1,   -- 0: dropped from the manifest, kept
        position      INTEGER NOT NULL,
        provider      TEXT,
        model         TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        file          TEXT,
        sha256        TEXT,
        bytes         INTEGER,
        cost_usd      REAL,
        usage         TEXT,                          -- JSON
        error_kind    TEXT,
        error_message TEXT,
        updated_at    REAL,
        PRIMARY KEY (id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX images_order ON images (in_manifest, position, idx);
    CREATE TABLE save_intents (
        id        TEXT NOT NULL,
        idx       INTEGER NOT NULL,
        file      TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        bytes     INTEGER NOT NULL,
        provider  TEXT NOT NULL,
        model     TEXT NOT NULL,
        cost_usd  REAL NOT NULL,
        usage     TEXT,
        PRIMARY KEY (id, idx),
        FOREIGN KEY (id, idx) REFERENCES images (id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
        attempt_id      INTEGER PRIMARY KEY,
        id              TEXT NOT NULL,
        idx             INTEGER NOT NULL,
        run_id          INTEGER REFERENCES runs (run_id),
        started_at      REAL NOT NULL,
        provider        TEXT NOT NULL,
        model           TEXT NOT NULL,
        outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'transient', 'blocked',
                            'invalid', 'quota', 'fatal', 'interrupted')),
        http_status     INTEGER,
        latency         REAL,
        error           TEXT,
        possibly_billed INTEGER NOT NULL DEFAULT 0,
        cost_usd        REAL NOT NULL DEFAULT 0,
        FOREIGN KEY (id, idx) REFERENCES images (id, idx)
    );
    CREATE INDEX attempts_image ON attempts (id, idx);
    """,
    # 2: each image's estimated price, so status can show what the pending ones will cost.
    """
    ALTER TABLE images ADD COLUMN estimate_usd REAL NOT NULL DEFAULT 0;
    """,
]


@dataclass(frozen=True, slots=True)
class PlannedImage:
    id: str
    index: int
    fingerprint: str
    position: int  # order in the manifest
    estimate_usd: float = 0.0  # what making it is expected to cost


@dataclass(frozen=True, slots=True)
class ImageRow:
    id: str
    index: int
    fingerprint: str
    status: str  # "pending" | "done" | "failed"
    provider: str | None
    model: str | None
    attempts: int  # requests ever made for this image, all runs
    file: str | None
    sha256: str | None
    bytes: int | None
    cost_usd: float | None
    error_kind: str | None
    error_message: str | None
    position: int
    updated_at: float | None
    usage: dict | None


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: float  # unix time
    provider: str
    model: str
    outcome: str  # success | transient | blocked | invalid | quota | fatal | interrupted
    http_status: int | None = None
    latency: float | None = None
    error: str | None = None
    possibly_billed: bool = False  # may have been charged without a saved image
    cost_usd: float = 0.0  # estimated cost of this attempt if billed


@dataclass(frozen=True, slots=True)
class SyncResult:
    new: int
    changed: int
    unchanged: int
    removed: int


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    done: int
    failed: int
    pending: int


@dataclass(frozen=True, slots=True)
class CostSummary:
    spent_usd: float
    possibly_spent_usd: float
    done_images: int
    possibly_billed_attempts: int
    remaining_usd: float = 0.0  # estimate for the pending images


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: int
    started_at: float
    finished_at: float | None
    manifest: str
    options: dict
    cwd: str
    pid: int
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class SaveIntent:
    id: str
    index: int
    file: str
    sha256: str


_IMAGE_COLUMNS = (
    "id, idx, fingerprint, status, provider, model, attempts, file, sha256, bytes, cost_usd,"
    " error_kind, error_message, position, updated_at, usage"
)
_ATTEMPT_COLUMNS = (
    "started_at, provider, model, outcome, http_status, latency, error, possibly_billed, cost_usd"
)


def _image(row: tuple) -> ImageRow:
    *head, usage = row
    return ImageRow(*head, usage=json.loads(usage) if usage is not None else None)


def _require(found: bool, key: Key, problem: str = "is not in the ledger") -> None:
    if not found:
        raise LedgerError(f"image {key[0]} #{key[1]} {problem}")


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (executescript would commit our open transaction)."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer
            buffer = ""


class Ledger:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._run_id: int | None = None  # stamped on attempts recorded after start_run

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open `path`, creating and migrating it as needed. The folder must exist."""
        path = Path(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
            cls._migrate(conn, path)
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

    @staticmethod
    def _migrate(conn: sqlite3.Connection, path: Path) -> None:
        def checked_version() -> int:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if app_id != APPLICATION_ID and not (app_id == 0 and version == 0 and empty):
                raise LedgerError(
                    f"{path} is a SQLite database but not an nbbatch ledger; "
                    "move it away or choose another output folder"
                )
            if version > len(MIGRATIONS):
                raise LedgerError(
                    f"{path} was written by a newer nbbatch (ledger schema {version}, this "
                    f"version knows up to {len(MIGRATIONS)}); upgrade nbbatch to use it"
                )
            return version

        # The common case (current schema) only reads, so `status` beside a run takes no lock.
        if checked_version() == len(MIGRATIONS):
            return
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the next one sees its work
        try:
            version = checked_version()
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, *, manifest: str, options: dict, cwd: str, pid: int) -> int:
        cur = self._write(
            "INSERT INTO runs (started_at, manifest, options, cwd, pid) VALUES (?, ?, ?, ?, ?)",
            (time.time(), manifest, json.dumps(options), cwd, pid),
        )
        assert cur.lastrowid is not None
        self._run_id = cur.lastrowid
        return cur.lastrowid

    def finish_run(self, run_id: int, exit_code: int) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, exit_code = ? WHERE run_id = ?",
            (time.time(), int(exit_code), run_id),
        )

    def last_run(self) -> RunRecord | None:
        row = self._conn.execute(
            "SELECT run_id, started_at, finished_at, manifest, options, cwd, pid, exit_code"
            " FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run_id, started, finished, manifest, options, cwd, pid, code = row
        return RunRecord(run_id, started, finished, manifest, json.loads(options), cwd, pid, code)

    # -- planning ---------------------------------------------------------------------------

    def sync(self, images: Iterable[PlannedImage]) -> SyncResult:
        """Make the ledger match the manifest's images, set-based in one transaction.

        Counts are changes relative to the ledger: `removed` counts keys dropped by this sync;
        a key that comes back counts as unchanged or changed by its fingerprint. A changed key
        becomes pending with its old result and any save intent cleared (attempts kept).
        """
        conn = self._conn
        with self._transaction():
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS plan (id TEXT, idx INTEGER, fingerprint TEXT,"
                " position INTEGER, estimate_usd REAL, PRIMARY KEY (id, idx)) WITHOUT ROWID"
            )
            conn.execute("DELETE FROM plan")
            try:
                conn.executemany(
                    "INSERT INTO plan VALUES (?, ?, ?, ?, ?)",
                    ((i.id, i.index, i.fingerprint, i.position, i.estimate_usd) for i in images),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"duplicate image key in the plan: {exc}") from exc
            total = conn.execute("SELECT count(*) FROM plan").fetchone()[0]
            now = time.time()
            removed = conn.execute(
                "UPDATE images SET in_manifest = 0 WHERE in_manifest = 1 AND NOT EXISTS"
                " (SELECT 1 FROM plan p WHERE p.id = images.id AND p.idx = images.idx)"
            ).rowcount
            conn.execute(
                "DELETE FROM save_intents WHERE EXISTS (SELECT 1 FROM plan p JOIN images i"
                " USING (id, idx) WHERE p.id = save_intents.id AND p.idx = save_intents.idx"
                " AND i.fingerprint <> p.fingerprint)"
            )
            changed = conn.execute(
                "UPDATE images SET fingerprint = p.fingerprint, position = p.position,"
                " in_manifest = 1, status = 'pending', provider = NULL, model = NULL,"
                " file = NULL, sha256 = NULL, bytes = NULL, cost_usd = NULL, usage = NULL,"
                " error_kind = NULL, error_message = NULL, updated_at = ?"
                " FROM plan p WHERE p.id = images.id AND p.idx = images.idx"
                " AND images.fingerprint <> p.fingerprint",
                (now,),
            ).rowcount
            # Only rows that moved or came back are written, so a no-change sync writes nothing.
            conn.execute(
                "UPDATE images SET position = p.position, in_manifest = 1,"
                " estimate_usd = p.estimate_usd FROM plan p"
                " WHERE p.id = images.id AND p.idx = images.idx"
                " AND (images.position <> p.position OR images.in_manifest = 0"
                " OR images.estimate_usd <> p.estimate_usd)"
            )
            new = conn.execute(
                "INSERT INTO images (id, idx, fingerprint, position, estimate_usd, updated_at)"
                " SELECT id, idx, fingerprint, position, estimate_usd, ? FROM plan p"
                " WHERE NOT EXISTS"
                " (SELECT 1 FROM images i WHERE i.id = p.id AND i.idx = p.idx)",
                (now,),
            ).rowcount
            conn.execute("DELETE FROM plan")
        return SyncResult(new=new, changed=changed, unchanged=total - new - changed,
                          removed=removed)

    def retry_failed(self) -> int:
        """Failed images in the manifest go back to pending, error cleared. Call after sync."""
        return self._write(
            "UPDATE images SET status = 'pending', error_kind = NULL, error_message = NULL,"
            " updated_at = ? WHERE status = 'failed' AND in_manifest = 1",
            (time.time(),),
        ).rowcount

    # -- reading ----------------------------------------------------------------------------

    def pending(self) -> list[ImageRow]:
        rows = self._conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE in_manifest = 1 AND status = 'pending'"
            " ORDER BY position, idx"
        )
        return [_image(row) for row in rows]

    def rows(self) -> Iterator[ImageRow]:
        """Every image in the manifest, in manifest order, streamed in chunks."""
        cur = self._conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE in_manifest = 1 ORDER BY position, idx"
        )
        try:
            while chunk := cur.fetchmany(1000):
                yield from map(_image, chunk)
        finally:
            cur.close()

    def states(self) -> dict[Key, tuple[str, str]]:
        """(fingerprint, status) of every image ever recorded: what `plan` compares against,
        without building a full row per image."""
        rows = self._conn.execute("SELECT id, idx, fingerprint, status FROM images")
        return {(id_, idx): (fingerprint, status) for id_, idx, fingerprint, status in rows}

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
        """Over images in the manifest: `spent` is the cost of the done images; `possibly
        spent` sums every attempt flagged possibly_billed (timeouts after sending), whatever
        happened to the image later."""
        spent, done = self._conn.execute(
            "SELECT total(cost_usd), count(*) FROM images WHERE in_manifest = 1"
            " AND status = 'done'"
        ).fetchone()
        possibly, billed = self._conn.execute(
            "SELECT total(a.cost_usd), count(*) FROM attempts a JOIN images i USING (id, idx)"
            " WHERE a.possibly_billed = 1 AND i.in_manifest = 1"
        ).fetchone()
        (remaining,) = self._conn.execute(
            "SELECT total(estimate_usd) FROM images WHERE in_manifest = 1 AND status = 'pending'"
        ).fetchone()
        return CostSummary(spent, possibly, done, billed, remaining)

    def attempts(self, key: Key) -> list[Attempt]:
        rows = self._conn.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE id = ? AND idx = ?"
            " ORDER BY attempt_id",
            key,
        )
        return [Attempt(*row[:7], possibly_billed=bool(row[7]), cost_usd=row[8]) for row in rows]

    def saves_in_progress(self) -> list[SaveIntent]:
        rows = self._conn.execute("SELECT id, idx, file, sha256 FROM save_intents ORDER BY id, idx")
        return [SaveIntent(*row) for row in rows]

    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    # -- outcomes ---------------------------------------------------------------------------

    def record_attempt(self, key: Key, attempt: Attempt) -> None:
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE images SET attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND idx = ?",
                (time.time(), *key),
            )
            _require(cur.rowcount > 0, key)
            self._conn.execute(
                f"INSERT INTO attempts (id, idx, run_id, {_ATTEMPT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, self._run_id, attempt.started_at, attempt.provider, attempt.model,
                 attempt.outcome, attempt.http_status, attempt.latency, attempt.error,
                 int(attempt.possibly_billed), attempt.cost_usd),
            )

    def begin_save(self, key: Key, *, file: str, sha256: str, bytes: int, provider: str,
                   model: str, cost_usd: float, usage: dict | None) -> None:
        """Record the intent to save before the file is renamed into place (still pending)."""
        with self._transaction():
            row = self._conn.execute("SELECT 1 FROM images WHERE id = ? AND idx = ?", key)
            _require(row.fetchone() is not None, key)
            self._conn.execute(
                "INSERT OR REPLACE INTO save_intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, file, sha256, bytes, provider, model, cost_usd,
                 json.dumps(usage) if usage is not None else None),
            )

    def mark_done(self, key: Key) -> None:
        with self._transaction():
            cur = self._conn.execute(
                "UPDATE images SET status = 'done', provider = s.provider, model = s.model,"
                " file = s.file, sha256 = s.sha256, bytes = s.bytes, cost_usd = s.cost_usd,"
                " usage = s.usage, error_kind = NULL, error_message = NULL, updated_at = ?"
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
