"""Plain timestamped lines, for cron logs and pipes: one event, one line, every line stamped.

`2026-12-01T01:30:02+0000 INFO    done red-sneaker -> images/red-sneaker.jpg (gemini, …)`
Everything from outside (server messages, paths, prompts' ids) is shown inert.
"""

from __future__ import annotations

import time
from typing import IO

from nbbatch.engine.events import Event, EventKind, Level, Progress
from nbbatch.text import printable

# What each verbosity shows: quiet only warnings and errors; normal adds progress; verbose
# every request and retry.
MIN_LEVEL = {0: Level.WARNING, 1: Level.INFO, 2: Level.DEBUG}


def timestamp(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))


def counts_text(done: int, failed: int, pending: int, total: int, separator: str = ", ") -> str:
    """`19 done, 0 failed, 4 pending of 23`: every count named, the total last."""
    return separator.join((f"{done} done", f"{failed} failed", f"{pending} pending of {total}"))


def log_line(level: Level, text: str, now: float | None = None) -> str:
    return f"{timestamp(now)} {level.name:7} {printable(text)}"


class LogLines:
    """Receives run events and writes them as plain lines to `stream`."""

    def __init__(self, stream: IO[str], *, verbosity: int = 1) -> None:
        self.stream = stream
        self.min_level = MIN_LEVEL[verbosity]

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def __call__(self, event: Event, progress: Progress) -> None:
        if event.level < self.min_level:
            return
        text = event.message
        if event.kind in (EventKind.DONE, EventKind.FAILED):
            p = progress
            text += f" [{counts_text(p.done, p.failed, p.pending, p.total)}]"
        self.say(text, event.level)

    def say(self, text: str, level: Level = Level.INFO) -> None:
        """One line of the run's own (a summary line, a hint), stamped like the events."""
        print(log_line(level, text), file=self.stream, flush=True)
