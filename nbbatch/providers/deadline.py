"""A request's total deadline, measured in time the process was running.

`time.monotonic()` keeps counting while the process is stopped (Ctrl-Z, SIGSTOP, a laptop
lid): a plain timer would fire the moment the process continues, and cut off answers that had
arrived meanwhile — answers already paid for, bought again by the retry. So time is counted
by a heartbeat on the event loop: each beat adds the time since the previous one, but never
more than `CREDIT`; a longer gap means the process was not running, and counts as `CREDIT`.
(A loop blocked by heavy work counts the same way: the deadline then grows by a little.)

`running_deadline` cancels the block once it has run out, but never in the first moments
after the process continued (`GRACE`): the answer that arrived meanwhile is read first. Once
the block marks its work complete, nothing cuts it off any more: a complete body is used.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

TICK = 0.25  # seconds between heartbeats
CREDIT = 0.5  # the most one gap between heartbeats may count: a longer one was a stop
GRACE = 0.25  # after a stop, the time an answer already waiting has to be read


class RunningClock:
    """Seconds the process has been running, advanced by heartbeats while anyone measures."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._last = monotonic()
        self._running = 0.0
        self._woke = float("-inf")  # when a stop last ended, on the monotonic clock
        self._users = 0
        self._beats: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self._running + min(self._monotonic() - self._last, CREDIT)

    def beat(self) -> None:
        t = self._monotonic()
        if t - self._last > CREDIT:
            self._woke = t
        self._running += min(t - self._last, CREDIT)
        self._last = t

    def just_continued(self) -> bool:
        """Whether the process is in its first moments after a stop (the heartbeat may not
        have run yet): no deadline should fire before what arrived meanwhile is read."""
        t = self._monotonic()
        return t - self._last > CREDIT or t - self._woke < GRACE

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Someone measures: keep the heartbeat going on `loop` until the last one stops."""
        if self._users == 0:
            self._last = self._monotonic()  # idle time, with nobody measuring, is not counted
            self._schedule(loop)
        self._users += 1

    def stop(self) -> None:
        self._users -= 1
        if self._users == 0 and self._beats is not None:
            self._beats.cancel()
            self._beats = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        def tick() -> None:
            self.beat()
            self._schedule(loop)

        self._beats = loop.call_later(TICK, tick)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunningClock] = (
    weakref.WeakKeyDictionary())


def running_clock(loop: asyncio.AbstractEventLoop) -> RunningClock:
    """The clock of `loop` (one per event loop: each has its own heartbeat)."""
    return _clocks.setdefault(loop, RunningClock())


class Deadline:
    """What the block of `running_deadline` may tell it."""

    def __init__(self) -> None:
        self.fired = False
        self.completed = False

    def complete(self) -> None:
        """The work is done (the whole body is read): the deadline no longer applies."""
        self.completed = True


@asynccontextmanager
async def running_deadline(seconds: float) -> AsyncIterator[Deadline]:
    """Run the block for at most `seconds` of running time; TimeoutError when it passes
    before the block marked its work complete."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    clock = running_clock(loop)
    clock.start(loop)
    deadline = Deadline()
    end = clock.now() + seconds
    cancelling = task.cancelling()
    handle: asyncio.TimerHandle | None = None

    def check() -> None:
        nonlocal handle
        if deadline.completed:
            return
        left = end - clock.now()
        if left > 0:  # the process was stopped meanwhile: that time does not count
            handle = loop.call_later(left, check)
            return
        if clock.just_continued():
            handle = loop.call_later(GRACE, check)
            return
        deadline.fired = True
        task.cancel()

    handle = loop.call_later(seconds, check)
    try:
        yield deadline
    except asyncio.CancelledError:
        if not deadline.fired or task.uncancel() > cancelling:
            raise  # cancelled by someone else (a signal, the run stopping)
        if not deadline.completed:
            raise TimeoutError from None
        # The deadline passed in the very moment the work completed: the result stands.
    finally:
        handle.cancel()
        clock.stop()
