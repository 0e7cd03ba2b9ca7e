"""The gallery's own files (the page and its thumbnails): their temporary names and cleanup.

They are put in place by store.atomic. Temporary names start with "." and end with
TEMP_SUFFIX and carry a random token, so two gallery writers never share one; a crash may
leave one behind, and the next write removes those old enough that no live writer can still
own them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from nbbatch.store.atomic import write_atomically

TEMP_SUFFIX = ".tmp"
# A temporary file or an unreferenced thumbnail younger than this may belong to another
# gallery writer working on the same folder right now: leave it alone.
STALE_AFTER_SECONDS = 3600.0


_TOKEN = re.compile(r"[0-9a-f]{12}")


def temp_name(final_name: str) -> str:
    return f".{final_name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def is_temp_name(name: str, is_final_name: Callable[[str], bool]) -> bool:
    """Whether `name` is a temp_name() of some file name that `is_final_name` accepts."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    final, _, token = name[1 : -len(TEMP_SUFFIX)].rpartition(".")
    return bool(_TOKEN.fullmatch(token)) and is_final_name(final)


def atomic_write(path: Path, data: bytes) -> None:
    """Place `data` at `path` atomically. Raises StorageError (disk full, no access)."""
    write_atomically(path, path.with_name(temp_name(path.name)), data)


def remove_old_files(folder: Path, wanted: Callable[[str], bool],
                     older_than: float = STALE_AFTER_SECONDS) -> int:
    """Delete the regular files of `folder` whose name `wanted` accepts and whose last change
    is older than `older_than` seconds. Returns how many were removed; errors are skipped
    (a leftover costs disk space, never correctness)."""
    removed = 0
    cutoff = time.time() - older_than
    try:
        listing = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in listing:
        if not wanted(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed
