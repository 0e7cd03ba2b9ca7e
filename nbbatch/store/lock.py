"""One run per output folder: an flock on OUT/.nbbatch.lock that names its holder.

flock is released by the kernel when the holder dies, so a `kill -9` never leaves a stale
lock behind; the holder's pid, host and start time are written into the file so a second run
can say who holds the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

from nbbatch.errors import FolderLockedError, StorageError, UnsafeFolderError
from nbbatch.store.paths import kind_of_file

LOCK_FILE = ".nbbatch.lock"
HOLDER_WAIT = 1.0  # seconds to wait for a new holder to write its name into the lock file


class FolderLock:
    """Held for the whole of a run; a second holder gets FolderLockedError (exit 75)."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        deadline = time.monotonic() + HOLDER_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _describe_holder(fd)
            # A holder that has just taken the lock writes its name a moment later: give it
            # that moment rather than answer "holder unknown" to a run started beside it.
            if holder is None and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            os.close(fd)
            raise FolderLockedError(
                f"{self.path.parent} is in use by another nbbatch run "
                f"({holder or 'holder unknown'}); wait for it to finish, or run again later"
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as exc:  # the disk is full: the lock is held, the name cannot be told
            os.close(fd)
            raise StorageError(f"cannot write the lock file {self.path}: "
                               f"{_reason(exc)}") from None
        self._fd = fd

    def _open(self) -> int:
        # O_NOFOLLOW: a lock file planted as a link must not make us truncate its target;
        # O_NONBLOCK: one planted as a pipe must not hang the run.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                         0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFolderError(
                    f"{self.path} is a symbolic link; remove it and run again"
                ) from None
            raise StorageError(f"cannot create the lock file {self.path}: "
                               f"{_reason(exc)}") from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise UnsafeFolderError(f"{self.path} is {kind_of_file(mode)}, not a lock file; "
                                    "remove it and run again")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # the name is only a courtesy to the next run
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _reason(exc: OSError) -> str:
    hint = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{exc.strerror}{hint}"


def current_holder(out: Path) -> str | None:
    """Who holds `out` now ("pid 12 on host, since …"), or None when no run does. Reads
    only, so it works on a folder the user cannot write; the shared lock it tries lasts
    an instant, and a run starting meanwhile retries for longer than that."""
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a pipe planted there holds nothing
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe_holder(fd) or "holder unknown"
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe_holder(fd: int) -> str | None:
    """Who holds the lock, from what it wrote into the file; None until it has written."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (ValueError, KeyError, TypeError, OSError):
        return None
