"""A run in batch mode: (1) collect the jobs that finished, (2) submit the pending images that
are in no live job, (3) wait - polling every `batch.poll_every` seconds and collecting each
job as it finishes - until none is live. With --no-wait it returns after (2), exit 75 while
images wait in live jobs, so the same cron line collects tonight what it sent last night.

Entered from run.run_batch after the same lock, recovery and ledger sync as online mode.
A signal while waiting ends the run (130/143) and leaves the jobs live; --max-duration
bounds the waiting the same way (75).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from nbbatch.engine.batch_collect import Collector
from nbbatch.engine.batch_context import BatchContext
from nbbatch.engine.batch_submit import Submitter, submitted_line
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
from nbbatch.engine.pacing import Clock, Sleep
from nbbatch.engine.preflight import blocking, needs_of, run_checks
from nbbatch.engine.pricing import Pricing
from nbbatch.engine.recorder import Recorder
from nbbatch.engine.shapes import Shapes
from nbbatch.engine.signals import signal_name
from nbbatch.engine.summary import RunSummary, exit_code_for
from nbbatch.errors import ExitCode, FatalError
from nbbatch.model import Manifest
from nbbatch.providers.base import BatchClient, Provider
from nbbatch.store.files import ImageStore
from nbbatch.store.ledger import Ledger


class BatchRun:
    def __init__(
        self,
        manifest: Manifest,
        ledger: Ledger,
        store: ImageStore,
        clients: Mapping[str, BatchClient],
        *,
        out_name: str,
        budget: Budget | None = None,
        no_wait: bool = False,
        checkers: Mapping[str, Provider] | None = None,
        on_event: EventSink | None = None,
        notes: Sequence[str] = (),
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.manifest, self.clients, self.no_wait = manifest, clients, no_wait
        self.checkers = checkers or {}  # online providers, for the pre-flight of keys, models
        self._watcher, self._clock = Watcher(on_event), clock
        counts = ledger.counts()
        self.progress = Progress(total=counts.total, done=counts.done, failed=counts.failed,
                                 pending=counts.pending, started_at=clock())
        self._notes, self._store = notes, store
        recorder = Recorder(ledger, store, self.progress, Pricing(manifest.providers),
                            Shapes(manifest), emit=self._emit, clock=clock, wall=wall)
        self.ctx = BatchContext(manifest, ledger, clients, recorder, self._emit, sleep, clock,
                                out_name)
        self.guard = BudgetGuard(budget or Budget(), clock=clock,
                                 started_at=self.progress.started_at)
        self.submitter = Submitter(self.ctx, self.guard)
        self.collector = Collector(self.ctx, stopped=lambda: self.interrupted_by is not None)
        self.interrupted_by: ExitCode | None = None
        self.stop: Stop | None = None
        self.fatal: FatalError | None = None
        self._wake = asyncio.Event()

    def interrupt(self, code: ExitCode) -> None:
        if self.interrupted_by is None:
            self.interrupted_by = code
            self.stop = Stop(StopKind.INTERRUPTED, f"interrupted by {signal_name(code)}: the "
                             "batch jobs stay live; run again to collect them")
            self._emit(Event(EventKind.STOPPING, self.stop.message, level=Level.WARNING))
        self._wake.set()

    async def run(self) -> RunSummary:
        self._announce()
        try:
            await self._preflight()
            await self._round()  # (1)
            if self.interrupted_by is None:
                await self.submitter.submit()  # (2)
                self.stop = self.stop or self.submitter.stop
            if self.no_wait:
                self._refresh()
                if self.progress.jobs_open and self.interrupted_by is None:
                    jobs = self.ctx.jobs.jobs(open_only=True)
                    self.stop = Stop(StopKind.NO_WAIT, submitted_line(jobs,
                                                                       self.progress.in_jobs))
            else:
                await self._wait()  # (3)
        except FatalError as exc:
            self.fatal = exc
        finally:
            for client in self.clients.values():
                await client.aclose()
            for provider in self.checkers.values():
                await provider.aclose()
        return self._summary()

    def _announce(self) -> None:
        pending = len(self.ctx.jobs.submittable())
        self._emit(Event(EventKind.STARTED, start_message(
            pending=pending, total=self.progress.total, manifest=self.manifest.path,
            out=self._store.out, providers=sorted(self.clients), mode="batch")))
        for note in self._notes:
            self._emit(Event(EventKind.PENDING, note, level=Level.WARNING))

    async def _preflight(self) -> None:
        """A rejected key or an unknown model stops the run before any job is sent, as
        online (one free metadata request per provider and model that new jobs will use)."""
        items = self.ctx.items
        pending = {row.id for row in self.ctx.jobs.submittable() if row.id in items}
        chosen = [items[i] for i in pending if items[i].provider in self.checkers]
        needs = needs_of(chosen, {item.id: (item.provider,) for item in chosen}, {})
        error = blocking(await run_checks(self.checkers, needs))
        if error is not None:
            raise error

    async def _round(self) -> None:
        for job in self.ctx.jobs.jobs(open_only=True):
            if self.interrupted_by is not None:
                break
            await self.collector.visit(job)
        self._refresh()

    async def _wait(self) -> None:
        deadline = self.guard.deadline()
        while self.interrupted_by is None:
            self._refresh()
            if not self.progress.jobs_open:
                return
            if deadline is not None and self._clock() >= deadline:
                self.stop = Stop(StopKind.MAX_DURATION, f"--max-duration reached "
                                 f"({self.guard.budget.max_duration:g} s): the batch jobs "
                                 "stay live; run again later to collect them")
                return
            nap = self.manifest.batch.poll_every
            if deadline is not None:
                nap = min(nap, max(0.0, deadline - self._clock()))
            await self._nap(nap)
            if self.interrupted_by is None:
                await self._round()

    async def _nap(self, seconds: float) -> None:
        """Sleep until the next poll, or until a signal wakes us."""
        sleeper = asyncio.ensure_future(self.ctx.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _refresh(self) -> None:
        jobs = self.ctx.jobs
        self.progress.jobs_open = len(jobs.jobs(open_only=True))
        self.progress.in_jobs = jobs.in_open_jobs()

    def _emit(self, event: Event) -> None:
        self._watcher(event, self.progress)

    def _summary(self) -> RunSummary:
        ledger = self.ctx.ledger
        counts = ledger.counts()
        self._refresh()
        stop = self.stop
        if self.fatal:
            stop = Stop(StopKind.FATAL, f"{self.fatal.provider or 'provider'}: "
                                        f"{self.fatal.message}")
        code = exit_code_for(counts, interrupted=self.interrupted_by, fatal=self.fatal,
                             all_dropped=self.fatal is not None)
        p = self.progress
        return RunSummary(
            counts=counts, cost=ledger.cost_summary(), run_spend=ledger.run_spend(),
            exit_code=code, stop=stop,
            requests=self.submitter.submitted, done_this_run=p.done_this_run,
            failed_this_run=p.failed_this_run, elapsed=self._clock() - p.started_at,
            submitted=self.submitter.submitted, jobs_open=p.jobs_open, in_jobs=p.in_jobs,
            watcher_error=self._watcher.error,
        )
