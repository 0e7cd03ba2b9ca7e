"""Every path nbbatch writes in the output folder is checked alike before it is written: a
symbolic link there would carry the write outside the folder, and a folder, pipe or device
where a file belongs would hang or fail. Both are refused, naming the path."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nbbatch.errors import StorageError, UnsafeFolderError, UsageError


def kind_of_file(mode: int) -> str:
    """What an lstat mode is, as a message says it."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def refuse_unsafe(path: Path, *, folder: bool = False) -> bool:
    """Check that writing `path` stays inside the folder: it is absent, or a regular file (a
    real folder when `folder`). True when it exists. UnsafeFolderError otherwise, StorageError
    when it cannot even be looked at."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot use {path}: {exc.strerror}") from None
    if stat.S_ISLNK(mode):
        raise UnsafeFolderError(f"{path} is a symbolic link: writing through it would land "
                                "outside the output folder; remove the link and run again")
    if not (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)):
        wanted = "a folder" if folder else "a file"
        raise UnsafeFolderError(f"{path} is {kind_of_file(mode)}, not {wanted}; move it away "
                                "and run again")
    return True


# Failures a later run may not meet (the disk gets space, a mount comes back writable): exit 75.
_TEMPORARY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES,
                        errno.EPERM, errno.EAGAIN})


def make_output_folder(out: Path) -> None:
    """Create the output folder (and its parents) if needed. StorageError (exit 75) when the
    disk refuses for now; UsageError when the path cannot be a folder at all."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"cannot create the output folder {out}: {exc.strerror}"
        if exc.errno in _TEMPORARY:
            hint = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise StorageError(message + hint) from None
        raise UsageError(message) from None
