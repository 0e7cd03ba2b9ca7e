"""Start-to-start pacing for one provider.

A request may start only when one interval (drawn afresh from the configured range) has passed
since the previous start, and never while the provider is paused by a server-given delay.
Requests overlap freely in between: throughput reaches the paced rate whatever the latency.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from nbbatch.model import Interval

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    def __init__(
        self,
        interval: Interval,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._next_start = float("-inf")
        self.paused_until = float("-inf")
        self._turns = asyncio.Lock()  # one waiter at a time keeps starts in order

    async def wait_turn(self, still_wanted: Callable[[], bool] = lambda: True) -> float | None:
        """Wait until a request may start; returns the start time on the pacer's clock, or
        None (without using up a turn) once `still_wanted()` says the request moved on."""
        async with self._turns:
            while True:
                if not still_wanted():
                    return None
                now = self._clock()
                ready_at = max(self._next_start, self.paused_until)
                if now >= ready_at:
                    break
                # A pause may arrive while we sleep: loop and look again.
                await self._sleep(ready_at - now)
            self._next_start = now + self.interval.draw(self._rng)
            return now

    def pause_for(self, seconds: float) -> None:
        """The server asked for quiet: no request starts on this provider before then."""
        self.paused_until = max(self.paused_until, self._clock() + seconds)

    def is_paused(self) -> bool:
        return self._clock() < self.paused_until
