"""The ledger's SQLite connection: read-write for a run, read-only for the commands that only
look, and what SQLite's errors mean to the person reading them.

Reading commands only read, so `status` and `plan` work on a folder the user may read but
not write. The ledger is in WAL mode, whose readers normally create `ledger.db-shm`; where
that cannot be created and no run left a write-ahead log behind, the file is read as
immutable instead.

What SQLite cannot check is checked here as well: a text cell that is not UTF-8 is read with
replacement characters, and a JSON cell that does not parse reads as missing, so one damaged
record cannot stop `status` from showing the rest.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbbatch.errors import LedgerError, LedgerWriteError
from nbbatch.store.paths import refuse_unsafe

COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite keeps beside the ledger


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection to the ledger at `path` (nothing read yet for a run; for reading, the
    schema is readable once this returns). LedgerError when it cannot be opened."""
    if not read_only:
        # SQLite follows links: ledger.db, or its -wal and -shm, planted as links would carry
        # the run's writes outside the output folder.
        for file in (path, *(path.with_name(path.name + suffix) for suffix in COMPANIONS)):
            refuse_unsafe(file)
    try:
        if not read_only:
            conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT
        else:
            conn = _open_read_only(path)
    except sqlite3.Error as exc:
        raise ledger_error(exc, path, writing=not read_only) from exc
    conn.text_factory = _text
    return conn


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads. Opened read-write where the file allows it (closing it
    then tidies the write-ahead log away, as the run's own does), read-only where not."""
    uri = f"file:{quote(str(path.absolute()))}"
    for mode in ("rw", "ro"):
        conn = sqlite3.connect(f"{uri}?mode={mode}", uri=True, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            name = getattr(exc, "sqlite_errorname", "")
            if not name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
                raise
    if _has_content(path.with_name(path.name + "-wal")):
        raise sqlite3.OperationalError(
            "the folder cannot be written and a run left changes in ledger.db-wal: run nbbatch "
            "once as a user who may write the folder")
    # A folder we may not write: nothing can create ledger.db-shm, and no log waits to be
    # applied, so the file alone is the whole ledger.
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def json_cell(text: Any) -> Any:
    """A JSON cell's value; None when it is empty or does not parse."""
    if not isinstance(text, str | bytes):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def ledger_error(exc: sqlite3.Error, path: Path, *, writing: bool) -> LedgerError:
    """The error a user reads for a failure of SQLite on the ledger at `path`."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith("SQLITE_NOTADB") or "not a database" in text:
        return LedgerError(f"{path} is not an nbbatch ledger (not a readable SQLite database); "
                           "move it away or choose another output folder")
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return LedgerError(
            f"the ledger {path} is damaged ({text}): restore it from a backup, or move it "
            "away and run again (a new ledger starts from nothing; the images already in "
            "images/ are kept, never overwritten)")
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return LedgerWriteError(f"cannot write the ledger {path}: the disk is full; free "
                                "some space and run again")
    if writing and name.startswith(("SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN",
                                    "SQLITE_PERM")):
        verb = "open" if name.startswith("SQLITE_CANTOPEN") else "write"
        return LedgerWriteError(f"cannot {verb} the ledger {path} to write it: {text}")
    verb = "use" if writing else "read"
    return LedgerError(f"cannot {verb} the ledger {path}: {text}")
