"""Signals that stop a run: Ctrl-C (SIGINT), SIGTERM, and SIGHUP (the terminal closed or the
ssh session dropped), each exiting 128 + its number.

Once requests are under way the event loop handles them: dispatching stops, what is in flight
is recorded as interrupted, the run is closed in the ledger and the summary printed; a second
signal stops at once. Before that (lock, ledger, sync) a signal raises SignalStop where the
program is, so the lock is released and any transaction rolled back on the way out. Once the
loop has ended, the run is as good as over: they are ignored while it is closed in the ledger.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from nbbatch.errors import ExitCode, SignalStop

STOPPING = ((signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM),
            (signal.SIGHUP, ExitCode.SIGHUP))


def signal_name(code: ExitCode) -> str:
    """"SIGHUP" for exit code 129: a process stopped by signal N exits 128 + N."""
    return signal.Signals(int(code) - 128).name


@contextmanager
def raised_during_start_up(enabled: bool) -> Iterator[None]:
    """SIGTERM and SIGHUP raise SignalStop inside the block (SIGINT raises
    KeyboardInterrupt already). The event loop takes them over while the run dispatches."""
    if not enabled:
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        code = ExitCode(128 + signum)
        raise SignalStop(code, f"interrupted by {signal_name(code)} before any request was "
                         "sent; nothing was lost")

    previous = {signum: signal.signal(signum, stop) for signum, _ in STOPPING[1:]}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def ignored(enabled: bool) -> Iterator[None]:
    """SIGTERM and SIGHUP are ignored in the block: the run has ended and is being closed in
    the ledger (milliseconds; killed there, it would stay open), then the summary follows."""
    if not enabled:
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum, _ in STOPPING[1:]}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def handle_in_loop(loop: asyncio.AbstractEventLoop, interrupted: Callable[[], object],
                   interrupt: Callable[[ExitCode], None]) -> None:
    """While requests are under way: the first signal stops the run cleanly (`interrupt`),
    a second one (`interrupted()` is then true) stops at once."""
    def on_signal(code: ExitCode) -> None:
        if interrupted():
            # Every ledger write is its own transaction, so nothing is left half-done.
            os._exit(int(code))
        interrupt(code)

    for signum, code in STOPPING:
        loop.add_signal_handler(signum, on_signal, code)
