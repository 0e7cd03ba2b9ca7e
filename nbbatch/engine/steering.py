"""Steering: one lane per provider (its pacer, its in-flight slots) and what each answer
means for the provider that gave it — pause it, switch away from it, drop it, bring it back.

The router (failover.py) decides where the next attempt goes; the lanes decide when it may
start. The state shown to the user is derived from both, never stored beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from nbbatch.engine.events import Event, EventKind, Level, ProviderState
from nbbatch.engine.failover import Choice, Router
from nbbatch.engine.pacing import Clock, Pacer, Sleep
from nbbatch.engine.preflight import Check
from nbbatch.errors import FatalError, ProviderError, QuotaExhaustedError, TransientError
from nbbatch.model import FailoverConfig, PacingConfig
from nbbatch.providers.base import Provider
from nbbatch.text import clock_parts

LONGEST_SERVER_WAIT = 900.0  # seconds; a longer server-given delay counts as exhausted


class Rerouted(TransientError):
    """This image's provider was dropped; another attempt goes to the next one in line."""


class Lane:
    """One provider as the engine drives it: its pacer, its in-flight slots."""

    def __init__(
        self, name: str, provider: Provider, pacing: PacingConfig, *, model: str | None,
        clock: Clock, sleep: Sleep, rng: random.Random,
    ) -> None:
        self.name = name
        self.provider = provider
        self.model = model  # what this provider makes when it stands in for another
        self.pacer = Pacer(pacing.interval, clock=clock, sleep=sleep, rng=rng)
        self.concurrency = pacing.concurrency
        # One request at a time until the provider has answered once: a rejected key or an
        # unknown model then costs exactly one request, never `concurrency` of them.
        self.slots = asyncio.Semaphore(1)
        self.opened = False
        self.answered = False
        self.backing_off = 0  # images waiting out a backoff after a failure here
        # After an overload answer, one request at a time until a success (or a trip): an
        # outage then costs `trip_after` requests, plus what was already in flight.
        self.cautious = False
        self.in_flight = 0
        self._flights = asyncio.Condition()

    def open_up(self) -> None:
        if not self.opened:
            self.opened = True
            for _ in range(self.concurrency - 1):
                self.slots.release()

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Hold while a request is in flight; while cautious, only with none other."""
        async with self._flights:
            await self._flights.wait_for(lambda: not self.cautious or self.in_flight == 0)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._flights:
                self.in_flight -= 1
                self._flights.notify_all()


class Steering:
    def __init__(
        self, lanes: Mapping[str, Lane], failover: FailoverConfig | None, *, clock: Clock,
        emit: Callable[[Event], None],
    ) -> None:
        self.lanes = dict(lanes)
        self.router = Router(
            list(self.lanes), trip_after=failover.trip_after if failover else 0,
            probe_every=failover.probe_every if failover else 0, clock=clock)
        self._emit = emit
        self._shown = {name: ProviderState.READY for name in self.lanes}  # last state told
        self.fatal: FatalError | None = None
        self.quota: QuotaExhaustedError | None = None

    # -- what the user sees --------------------------------------------------------------

    def state(self, name: str) -> ProviderState:
        health, lane = self.router.health[name], self.lanes[name]
        if health.dropped:
            return ProviderState.DROPPED
        if health.tripped_at is not None:
            return ProviderState.SWITCHED_AWAY
        if lane.pacer.is_paused():
            return ProviderState.PAUSED
        if lane.backing_off:
            return ProviderState.RETRYING
        return ProviderState.OK if lane.answered else ProviderState.READY

    def states(self) -> dict[str, ProviderState]:
        return {name: self.state(name) for name in self.lanes}

    def _tell(self, lane: Lane, level: Level = Level.INFO, detail: str = "") -> None:
        """Emit an event when the provider's state changed into one worth a line (paused,
        switched away; dropped is told by `drop`), or with `detail` (it recovered).
        Retries are shown live, not as news; once dropped, a provider is told no more."""
        state, previous = self.state(lane.name), self._shown[lane.name]
        self._shown[lane.name] = state
        if state == previous or previous == ProviderState.DROPPED:
            return
        if state in (ProviderState.PAUSED, ProviderState.SWITCHED_AWAY) or detail:
            text = f"{lane.name}: {state}" + (f" - {detail}" if detail else "")
            self._emit(Event(EventKind.PROVIDER, text, provider=lane.name, level=level))

    # -- routing -------------------------------------------------------------------------

    def usable(self, candidates: Sequence[str]) -> tuple[str, ...]:
        return tuple(n for n in candidates if n in self.lanes and not self.router.health[n].dropped)

    def all_dropped(self) -> bool:
        return self.router.all_dropped()

    # -- what an answer means ------------------------------------------------------------

    def succeeded(self, lane: Lane, choice: Choice) -> None:
        lane.answered, lane.cautious = True, False
        lane.open_up()
        recovered = self.router.succeeded(choice)
        self._tell(lane, detail="recovered: serving again" if recovered else "")

    def failed(self, lane: Lane, choice: Choice, exc: ProviderError,
               candidates: Sequence[str]) -> None:
        """Let one failure steer the provider: pause, switch away, or drop it. Raises when
        the image should go on differently than the answer itself says."""
        lane.answered = True
        if not isinstance(exc, FatalError):
            lane.open_up()
        answer = exc
        if isinstance(exc, TransientError) and exc.overload:
            lane.cautious = True
            if self.router.overloaded(choice):
                self._tell(lane, Level.WARNING, f"{self.router.trip_after} overloads in a row; "
                                                f"probing every {self.router.probe_every:g}s")
        else:
            self.router.failed_otherwise(choice)
        delay = exc.retry_after if isinstance(exc, TransientError) else None
        if delay:
            if delay > LONGEST_SERVER_WAIT:
                # Hours, not seconds (a Cloudflare 1015, a quota in disguise): waiting would
                # stall the whole run, so the provider is done for today.
                exc = QuotaExhaustedError(f"asks to wait {_hours(delay)}: {exc.message}",
                                          provider=exc.provider, status=exc.status)
            else:
                lane.pacer.pause_for(delay)
                self._tell(lane, detail=f"{delay:g}s (server asked)")
        self._tell(lane)
        if isinstance(exc, QuotaExhaustedError | FatalError):
            self.drop(lane, exc)
            if self.usable(candidates):
                raise Rerouted(f"{lane.name}: {exc.message}") from exc
            if exc is not answer:
                raise exc

    def drop(self, lane: Lane, exc: QuotaExhaustedError | FatalError) -> None:
        if isinstance(exc, FatalError):
            self.fatal = self.fatal or exc
        else:
            self.quota = self.quota or exc
        if self.router.drop(lane.name, exc.message):
            what = "quota exhausted" if isinstance(exc, QuotaExhaustedError) else "rejected"
            self._shown[lane.name] = ProviderState.DROPPED
            self._emit(Event(EventKind.PROVIDER, f"{lane.name}: dropped ({what}) - "
                             f"{exc.message}", provider=lane.name, level=Level.ERROR))


    # -- before the first request and after the last -----------------------------------

    def take_checks(self, checks: Sequence[Check], named: set[str]) -> None:
        """What the pre-flight found: a passed check opens the lane to full concurrency; a
        backup (a provider no item names) that can never serve is dropped now. Blocking
        findings on named providers were raised before this (preflight.blocking)."""
        for check in checks:
            lane = self.lanes[check.provider]
            if check.passed:
                lane.open_up()
            elif check.unavailable:
                self._emit(Event(EventKind.PROVIDER, f"{check.provider}: pre-flight could not "
                                 f"check {check.model} ({check.unavailable}); its first request "
                                 "goes alone", provider=check.provider, level=Level.DEBUG))
            elif isinstance(check.error, QuotaExhaustedError) or check.provider not in named:
                assert check.error is not None
                self.drop(lane, check.error)

    async def aclose(self) -> None:
        for lane in self.lanes.values():
            try:
                await lane.provider.aclose()
            except Exception as exc:  # closing must not hide how the run went
                self._emit(Event(EventKind.PROVIDER, f"{lane.name}: could not close its "
                                 f"connections cleanly: {exc}", provider=lane.name,
                                 level=Level.DEBUG))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if clock_parts(seconds) else "more than 100 days"
