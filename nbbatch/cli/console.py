"""Where output goes: the terminal's width checked, streams that a failed write cannot break,
and the Rich consoles that print plain text, never markup.

A closed pipe (`nbbatch status | head`), a full log disk or a vanished terminal must not
change what a run does: `GuardedStream` swallows the failure, remembers the first one and
drops the rest of the output, so the engine's bookkeeping never sees it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TextIO

from rich.console import Console

MIN_WIDTH, MAX_WIDTH = 40, 1000  # columns: narrower leaves no room for words, wider is absurd
WIDTH_VARIABLES = ("COLUMNS", "TERMINAL_WIDTH")  # read by Rich and by Typer's help
_BUFFER = 64 * 1024


def check_width_variables(environ: MutableMapping[str, str]) -> None:
    """Bring terminal widths from the environment within bounds: COLUMNS=0 would print empty
    messages, COLUMNS=100000000 a gigabyte of help. Anything that is not a number is
    dropped (the terminal's own size is used)."""
    for name in WIDTH_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        text = value.strip()
        if not text.isdigit():
            del environ[name]
        else:
            environ[name] = str(min(max(int(text), MIN_WIDTH), MAX_WIDTH))


class GuardedStream:
    """A text stream over a file descriptor whose write errors end output, never the caller.

    A closed reader (EPIPE) ends output quietly; any other failure (ENOSPC, EIO) is kept in
    `error` for the caller to report where it still can. Written bytes are buffered and
    sent on flush (every line, on a terminal)."""

    def __init__(self, fd: int, *, encoding: str = "utf-8") -> None:
        self.fd = fd
        self.encoding = encoding
        self.errors = "backslashreplace"
        self.error: OSError | None = None
        self.closed_by_reader = False
        self._pending = bytearray()
        self._tty = _isatty(fd)

    # -- the file interface Rich, Typer and print() use ----------------------------------

    def write(self, text: str) -> int:
        if not self.failed:
            self._pending += text.encode(self.encoding, self.errors)
            if len(self._pending) >= _BUFFER or (self._tty and "\n" in text):
                self.flush()
        return len(text)

    def flush(self) -> None:
        view = memoryview(self._pending)
        try:
            while view and not self.failed:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            self._fail(exc)
        finally:
            view.release()
            self._pending.clear()

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self.fd

    def writable(self) -> bool:
        return True

    @property
    def failed(self) -> bool:
        return self.closed_by_reader or self.error is not None

    def _fail(self, exc: OSError) -> None:
        if exc.errno == errno.EPIPE:
            self.closed_by_reader = True
            # Nothing may write to the closed pipe again, not even the interpreter's exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.fd)
            os.close(devnull)
        elif self.error is None:
            self.error = exc


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def guard_standard_streams() -> tuple[GuardedStream, GuardedStream]:
    """Replace sys.stdout and sys.stderr with guarded streams over the same descriptors."""
    streams = []
    for name in ("stdout", "stderr"):
        original: TextIO = getattr(sys, name)
        original.flush()
        stream = GuardedStream(original.fileno(), encoding=original.encoding or "utf-8")
        setattr(sys, name, stream)
        streams.append(stream)
    return streams[0], streams[1]


def output_failure() -> OSError | None:
    """The first write failure of standard output, when it is guarded."""
    return getattr(sys.stdout, "error", None)


def stdout_closed_by_reader() -> bool:
    return bool(getattr(sys.stdout, "closed_by_reader", False))


def make_console(*, stderr: bool = False) -> Console:
    """A console on the current standard stream that prints text as it is: no markup, no
    emoji codes, no highlighting (a prompt or a server message is text, never style).
    Lines are not wrapped off a terminal (a log or a pipe keeps one line per line), nor on
    stderr (one error, one greppable line)."""
    file = sys.stderr if stderr else sys.stdout
    return Console(file=file, markup=False, emoji=False, highlight=False,
                   soft_wrap=stderr or not file.isatty())


def display_path(path: Path) -> str:
    """`path` as short as it can be said from here."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
