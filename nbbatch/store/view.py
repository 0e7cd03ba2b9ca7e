"""Reading the ledger: `LedgerView` holds what the reading commands need (images, attempts,
runs, counts, costs). A SQLite error while reading (a damaged page) becomes a LedgerError
that says what to do; the connection itself is opened in connection.py.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, Self, TypeVar, cast

from nbbatch.errors import LedgerError
from nbbatch.model import Item
from nbbatch.store import migrations
from nbbatch.store.batch_jobs import BatchJobsView
from nbbatch.store.connection import connect, json_cell, ledger_error
from nbbatch.store.items import load_items
from nbbatch.store.migrations import schema_version
from nbbatch.store.records import (
    ATTEMPT_COLUMNS,
    IMAGE_COLUMNS,
    IMAGES,
    Attempt,
    CostSummary,
    Counts,
    ImageRow,
    Key,
    RunRecord,
    SaveIntent,
    Spend,
    attempt_row,
    image_row,
)
from nbbatch.store.spend import cost_summary, spend_among
from nbbatch.store.sync import unchanged_since_last_sync

P = ParamSpec("P")
R = TypeVar("R")


def reads(method: Callable[P, R]) -> Callable[P, R]:
    """A read of the ledger whose SQLite errors (a damaged page) become a LedgerError that
    says what to do, not a traceback; generators are covered while they are iterated."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise ledger_error(exc, self.path, writing=False) from exc
        return cast(Callable[P, R], stream)

    @functools.wraps(method)
    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise ledger_error(exc, self.path, writing=False) from exc
    return cast(Callable[P, R], read)


class LedgerView:
    """The ledger's contents: images, attempts, runs, counts and costs."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Self:
        """Open `path`, creating and migrating it as needed (the folder must exist); with
        `read_only`, only read it (a ledger of an older schema is upgraded once if the
        folder allows it)."""
        path = Path(path)
        conn = connect(path, read_only=read_only)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA temp_store = MEMORY")
            if read_only:
                if schema_version(conn, path) < len(migrations.MIGRATIONS):
                    conn.close()
                    return cls._upgraded(path)
            else:
                conn.execute("PRAGMA foreign_keys = ON")
                migrations.migrate(conn, path)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise ledger_error(exc, path, writing=not read_only) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    @classmethod
    def _upgraded(cls, path: Path) -> Self:
        try:
            return cls.open(path)
        except LedgerError as exc:
            raise LedgerError(f"{path} was written by an older nbbatch and must be upgraded "
                              "once, which needs write access to its folder (run nbbatch "
                              f"status or resume as its owner): {exc.message}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @reads
    def last_run(self) -> RunRecord | None:
        row = self._conn.execute(
            "SELECT run_id, started_at, finished_at, manifest, options, cwd, pid, exit_code,"
            " settings FROM runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run_id, started, finished, manifest, options, cwd, pid, code, settings = row
        return RunRecord(run_id, started, finished, manifest, json_cell(options), cwd, pid, code,
                         json_cell(settings))

    @reads
    def items(self) -> list[Item]:
        """What the items of the manifest asked for, in manifest order."""
        return list(load_items(self._conn))

    @reads
    def pending(self) -> list[ImageRow]:
        rows = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1 AND status = 'pending'"
            " ORDER BY images.position, idx"
        )
        return [image_row(row) for row in rows]

    @reads
    def rows(self, status: str | None = None, *,
             attention_first: bool = False) -> Iterator[ImageRow]:
        """Every image in the manifest (or those with `status`), in manifest order, streamed
        in chunks; with `attention_first`, failed ones first, then pending, then done (each
        status read in order from its index: nothing to sort)."""
        if attention_first and status is None:
            for each in ("failed", "pending", "done"):
                yield from self.rows(each)
            return
        where = "" if status is None else " AND images.status = ?"
        cur = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1{where}"
            " ORDER BY images.position, idx", () if status is None else (status,)
        )
        try:
            while chunk := cur.fetchmany(1000):
                yield from map(image_row, chunk)
        finally:
            cur.close()

    @reads
    def states(self, *, unfinished_only: bool = False) -> dict[Key, tuple[str, str]]:
        """(fingerprint, status) of every image ever recorded: what `plan` compares against,
        without building a full row per image; with `unfinished_only`, of the failed and
        pending images of the manifest alone (read from the status index)."""
        rows = self._conn.execute(
            "SELECT id, idx, fingerprint, status FROM images" + (
                " WHERE in_manifest = 1 AND status IN ('failed', 'pending')"
                if unfinished_only else ""))
        return {(id_, idx): (fingerprint, status) for id_, idx, fingerprint, status in rows}

    @reads
    def synced_as(self, digest: str) -> bool:
        """Whether the last sync was given `digest` (engine/planned.py): then the ledger holds
        exactly the images it stands for, with their fingerprints, and only their statuses
        have moved since."""
        return unchanged_since_last_sync(self._conn, digest)

    @reads
    def done_files(self) -> Iterator[tuple[Key, str | None, int | None]]:
        """(key, file, bytes) of every done image in the manifest, streamed."""
        # `+` keeps SQLite from the index: most images are done, and reading the table
        # straight through is twice as fast as looking each one up from the index.
        rows = self._conn.execute(
            "SELECT id, idx, file, bytes FROM images WHERE +in_manifest = 1 AND +status = 'done'")
        for id_, idx, file, size in rows:
            yield (id_, idx), file, size

    @reads
    def needing_attention(self, limit: int) -> list[ImageRow]:
        """The first `limit` failed images, then pending ones, in manifest order."""
        rows = self._conn.execute(
            f"SELECT {IMAGE_COLUMNS} FROM {IMAGES} WHERE in_manifest = 1"
            " AND images.status IN ('failed', 'pending')"
            " ORDER BY images.status = 'pending', images.position, idx LIMIT ?", (limit,))
        return [image_row(row) for row in rows]

    @reads
    def counts(self) -> Counts:
        row = self._conn.execute(
            "SELECT count(*), total(status = 'done'), total(status = 'failed'),"
            " total(status = 'pending') FROM images WHERE in_manifest = 1"
        ).fetchone()
        return Counts(*(int(n) for n in row))

    @reads
    def counts_by_provider(self) -> dict[str, Counts]:
        """Done and failed images per provider that made them; pending ones under ""."""
        rows = self._conn.execute(
            "SELECT CASE WHEN status = 'pending' THEN '' ELSE coalesce(provider, '') END AS p,"
            " count(*), total(status = 'done'), total(status = 'failed'),"
            " total(status = 'pending') FROM images WHERE in_manifest = 1 GROUP BY p ORDER BY p"
        )
        return {p: Counts(*(int(n) for n in rest)) for p, *rest in rows}

    @reads
    def cost_summary(self) -> CostSummary:
        """What the done images cost, every run spent, the pending may cost (spend.py)."""
        return cost_summary(self._conn)

    @reads
    def spend(self, where: str = "", params: tuple[Any, ...] = ()) -> Spend:
        """Money the attempts `where` selects spent; every run's by default (spend.py)."""
        return spend_among(self._conn, where, params)

    @reads
    def attempts(self, key: Key) -> list[Attempt]:
        rows = self._conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = ? AND idx = ?"
            " ORDER BY attempt_id",
            key,
        )
        return [attempt_row(row) for row in rows]

    @reads
    def saves_in_progress(self) -> list[SaveIntent]:
        rows = self._conn.execute("SELECT id, idx, file, sha256 FROM save_intents ORDER BY id, idx")
        return [SaveIntent(*row) for row in rows]

    @property
    def batch(self) -> BatchJobsView:
        """Batch jobs and their images (store/batch_jobs.py)."""
        return BatchJobsView(self._conn)

    @reads
    def file_owner(self, name: str) -> tuple[Key, str] | None:
        """The image that holds (or is about to hold) the file `name` ("images/x.png") and
        the SHA-256 it was written with, comparing names ignoring case as case-insensitive
        file systems do; None when no record has it. Every file the ledger ever placed
        counts, dropped items' included."""
        row = self._conn.execute(
            "SELECT id, idx, sha256 FROM save_intents WHERE file = ?1 COLLATE NOCASE"
            " UNION ALL SELECT id, idx, sha256 FROM files WHERE name = ?1 LIMIT 1", (name,)
        ).fetchone()
        return ((row[0], row[1]), row[2]) if row else None

    @reads
    def integrity_ok(self) -> bool:
        return self._conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
