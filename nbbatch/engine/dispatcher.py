"""The run loop: pending images -> image jobs, as many at a time as budgets and lanes allow.

`Dispatcher.run` works with no terminal: the CLI and the tests drive it alike, and every
outcome reaches them as an Event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence

from nbbatch.engine.budget import Budget, BudgetGuard, Stop, StopKind
from nbbatch.engine.events import (
    Event,
    EventKind,
    EventSink,
    Level,
    Progress,
    Watcher,
    start_message,
)
from nbbatch.engine.failover import candidates, routes_of
from nbbatch.engine.image_job import ImageMaker
from nbbatch.engine.job import ImageJob
from nbbatch.engine.pacing import Clock, Sleep
from nbbatch.engine.preflight import blocking, needs_of, run_checks
from nbbatch.engine.pricing import Pricing
from nbbatch.engine.recorder import Recorder
from nbbatch.engine.shapes import Shapes
from nbbatch.engine.signals import signal_name
from nbbatch.engine.steering import Lane, Steering
from nbbatch.engine.summary import RunSummary, exit_code_for
from nbbatch.errors import ExitCode
from nbbatch.model import Item, Manifest
from nbbatch.providers import registry
from nbbatch.providers.base import Provider
from nbbatch.store.files import ImageStore
from nbbatch.store.ledger import Ledger
from nbbatch.store.records import ImageRow

WINDOW_PER_SLOT = 4  # images queued per in-flight slot: enough to keep every lane busy


class Dispatcher:
    def __init__(
        self,
        manifest: Manifest,
        ledger: Ledger,
        store: ImageStore,
        providers: Mapping[str, Provider],
        *,
        budget: Budget | None = None,
        on_event: EventSink | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.manifest = manifest
        self._watcher = Watcher(on_event)  # a failing watcher never breaks the run
        self._clock = clock
        rng = rng or random.Random()
        lanes = {
            name: Lane(name, provider, manifest.pacing, clock=clock, sleep=sleep, rng=rng,
                       model=manifest.provider(name).model or registry.default_model(name))
            for name, provider in providers.items()
        }
        self.steering = Steering(lanes, manifest.failover, clock=clock, emit=self._emit)
        counts = ledger.counts()
        self.progress = Progress(
            total=counts.total, done=counts.done, failed=counts.failed, pending=counts.pending,
            started_at=clock(), provider_states=self.steering.states,
        )
        self.pricing = Pricing(manifest.providers)
        self.shapes = Shapes(manifest)
        self.recorder = Recorder(ledger, store, self.progress, self.pricing, self.shapes,
                                 emit=self._emit, clock=clock, wall=wall)
        self.maker = ImageMaker(self.steering, self.recorder, manifest.retry, halt=self.halt,
                                stopped=lambda: self.stop is not None,
                                may_send=self._may_send, emit=self._emit, sleep=sleep)
        self._sleep = sleep
        self.budget = BudgetGuard(budget or Budget(), clock=clock,
                                  started_at=self.progress.started_at)
        self.items = {item.id: item for item in manifest.items}
        self._jobs: set[ImageJob] = set()
        self._changed = asyncio.Event()  # set whenever a job ends: wakes the dispatcher
        self.stop: Stop | None = None
        self.interrupted_by: ExitCode | None = None

    # -- control -----------------------------------------------------------------------

    def halt(self, stop: Stop, hard: bool = False) -> None:
        """Stop dispatching. Graceful: requests in flight finish and are saved. Hard (signal,
        fatal error): everything is cancelled and stays pending."""
        if self.stop is None:
            self.stop = stop
            self._emit(Event(EventKind.STOPPING, stop.message, level=Level.WARNING))
        for job in list(self._jobs):
            if job.task and (hard or not job.working):
                job.task.cancel()
        self._changed.set()

    def interrupt(self, code: ExitCode) -> None:
        self.interrupted_by = self.interrupted_by or code
        self.halt(Stop(StopKind.INTERRUPTED, f"interrupted by {signal_name(code)}: in-flight "
                       "images stay pending"), hard=True)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, pending: list[ImageRow], notes: Sequence[str] = (), *,
                  preflight: bool = True) -> RunSummary:
        """Make the `pending` images; `notes` are told after the start line (images whose
        file went missing, say), before the pre-flight checks."""
        self._announce(pending)
        for note in notes:
            self._emit(Event(EventKind.PENDING, note, level=Level.WARNING))
        deadline = self.budget.deadline()
        watchdog = asyncio.create_task(self._expire(deadline)) if deadline is not None else None
        try:
            if preflight:
                await self._preflight(pending)
            await self._dispatch(pending)
        finally:
            if watchdog:
                watchdog.cancel()
        await self.steering.aclose()
        return self._summary()

    async def _expire(self, deadline: float) -> None:
        """--max-duration holds while every job is waiting (a server pause, a backoff), not
        only when the next image is dispatched: at the deadline the run stops dispatching."""
        while (left := deadline - self._clock()) > 0:
            await self._sleep(left)
        self.halt(Stop(StopKind.MAX_DURATION,
                       f"--max-duration reached ({self.budget.budget.max_duration:g} s)"))

    def _may_send(self) -> Stop | None:
        """Whether another request may go out now (a retry as much as a first attempt)."""
        return self.budget.check_attempt(spent=self.recorder.spent,
                                         reserved=sum(j.reserve for j in self._jobs))

    async def _dispatch(self, pending: list[ImageRow]) -> None:
        window = sum(lane.concurrency for lane in self.steering.lanes.values()) * WINDOW_PER_SLOT
        for row in pending:
            if self.stop:
                break
            item = self.items.get(row.id)
            if item is None:
                continue
            usable = self.steering.usable(candidates(item, self.manifest.failover, self.shapes))
            if not usable:
                continue  # stays pending for a later run
            job = ImageJob(row, item, usable, reserve=self._reserve(item, usable))
            if not await self._wait_for_room(window, job):
                break
            self._start(job)
        while self._jobs:
            self._changed.clear()
            await self._changed.wait()

    async def _preflight(self, pending: list[ImageRow]) -> None:
        """Check keys and models before the first generation request (see preflight.py)."""
        lanes = self.steering.lanes
        items = {row.id: self.items[row.id] for row in pending if row.id in self.items}
        routes = routes_of(items.values(), self.manifest.failover, self.shapes,
                           keep=self.steering.usable)
        needs = needs_of(items.values(), routes, {n: lane.model for n, lane in lanes.items()})
        checks = await run_checks({n: lane.provider for n, lane in lanes.items()}, needs)
        if (error := blocking(checks)) is not None:
            await self.steering.aclose()
            raise error
        self.steering.take_checks(checks, {provider for provider, _ in needs.named_by})
        if lanes and self.steering.all_dropped():  # no lanes: nothing to do, nothing to stop
            self.halt(Stop(StopKind.QUOTA, "no provider can serve: run again when the quota "
                                           "resets"))

    def _reserve(self, item: Item, usable: tuple[str, ...]) -> float:
        """The most one of `item`'s images may cost on any provider that may make it."""
        lanes = self.steering.lanes
        models = {name: item.model if name == item.provider else (lanes[name].model or item.model)
                  for name in usable}
        return self.pricing.reserve(item, models, self.recorder.dearest_seen)

    async def _wait_for_room(self, window: int, job: ImageJob) -> bool:
        """Wait until `job` may start; False when the run must stop dispatching."""
        while True:
            if self.stop:
                return False
            stop = self.budget.check(
                active=len(self._jobs), made=self.progress.done_this_run,
                spent=self.recorder.spent, reserved=sum(j.reserve for j in self._jobs),
                next_cost=job.reserve)
            if stop and (not self._jobs or not stop.waits_for_running):
                self.halt(stop)  # time is up at once; other budgets wait for what is running
                return False
            if stop is None and len(self._jobs) < window:
                return True
            self._changed.clear()
            await self._changed.wait()

    def _start(self, job: ImageJob) -> None:
        self._jobs.add(job)
        job.task = asyncio.create_task(self.maker.make(job))

        def finished(_: asyncio.Task[None]) -> None:
            self._jobs.discard(job)
            self._changed.set()

        job.task.add_done_callback(finished)

    def _emit(self, event: Event) -> None:
        self._watcher(event, self.progress)

    def _announce(self, pending: list[ImageRow]) -> None:
        lanes = self.steering.lanes
        order = [n for n in self.manifest.failover.order if n in lanes] \
            if self.manifest.failover else []
        roles = [f"{n} (primary)" if i == 0 else f"{n} (backup)" for i, n in enumerate(order)]
        roles += sorted(n for n in lanes if n not in order)
        self._emit(Event(EventKind.STARTED, start_message(
            pending=len(pending), total=self.progress.total, manifest=self.manifest.path,
            out=self.recorder.store.out, providers=roles, mode="online")))

    def _summary(self) -> RunSummary:
        ledger = self.recorder.ledger
        counts = ledger.counts()
        fatal = self.steering.fatal
        code = exit_code_for(counts, interrupted=self.interrupted_by, fatal=fatal,
                             all_dropped=self.steering.all_dropped(),
                             stuck_on_fatal=self.recorder.stuck_on_fatal,
                             defect=self.stop is not None and self.stop.kind is StopKind.DEFECT)
        stop = self.stop
        if fatal and code == fatal.exit_code:
            stop = Stop(StopKind.FATAL, f"{fatal.provider or 'provider'}: {fatal.message}")
        return RunSummary(
            counts=counts, cost=ledger.cost_summary(), run_spend=ledger.run_spend(),
            exit_code=code, stop=stop, requests=self.progress.requests,
            done_this_run=self.progress.done_this_run,
            failed_this_run=self.progress.failed_this_run,
            elapsed=self._clock() - self.progress.started_at, retries=self.progress.retries,
            watcher_error=self._watcher.error,
        )

