"""Opening the files a manifest names (and the manifest itself): regular files only.

A folder has no text, a device such as /dev/zero never ends and a pipe blocks until someone
writes to it; each is refused by what it is, before a byte is read, so the message can say
so instead of "not found" or a hang.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotAFileError(Exception):
    """The path exists but is no regular file; `kind` says what it is ("a folder"...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading in binary. OSError as os.open raises it (FileNotFoundError,
    ENAMETOOLONG...), NotAFileError for anything but a regular file."""
    # O_NONBLOCK: opening a pipe must not wait for a writer; no effect on a regular file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        # A socket cannot be opened at all ("No such device or address"): say what it is.
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise NotAFileError(_kind(mode)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFileError(_kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a socket" if stat.S_ISSOCK(mode) else "a device or a pipe"


def reason(exc: OSError) -> str:
    """What went wrong, in the system's words: "File name too long", "Permission denied"."""
    return exc.strerror or str(exc)
