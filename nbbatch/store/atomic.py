"""The one way nbbatch puts a file in place: write a temporary file beside it, fsync, rename.

A reader or a `kill -9` never meets half a file under its final name. Callers choose the
temporary name (images name theirs by hash so a crash can be finished; the gallery's carry a
random token) and what to clean up later.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from nbbatch.errors import StorageError


def write_atomically(final: Path, temp: Path, data: bytes) -> None:
    """Place `data` at `final` by way of `temp` (same folder). Raises StorageError (disk
    full, no access); `temp` is gone afterwards either way."""
    try:
        # O_NOFOLLOW: never write through a link planted under the temporary name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        hint = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise StorageError(f"cannot write {final}: {exc.strerror}{hint}") from exc
    # The bytes are on disk under the final name. Syncing the folder only makes the rename
    # durable across a power cut; some file systems refuse it (EINVAL), which is harmless,
    # and failing here would disown a file that is already complete.
    fsync_folder(final.parent)


def fsync_folder(path: Path) -> None:
    """Make renames in `path` durable where the file system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
