"""The batch loop: pending images -> paced, retried requests -> image files and ledger rows.

`BatchRunner.run` works with no terminal: the CLI and the tests drive it alike, and every
outcome reaches them as an Event. A failed image is a ledger row, never an escaping exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from nbbatch import catalog
from nbbatch.errors import (
    BlockedError,
    ExitCode,
    FatalError,
    InvalidRequestError,
    LedgerError,
    ProviderError,
    QuotaExhaustedError,
    StorageError,
    TransientError,
)
from nbbatch.failover import Choice, NoProviderLeft, Router, candidates
from nbbatch.ledger import Attempt, CostSummary, Counts, ImageRow, Ledger
from nbbatch.manifest import Item, Manifest, PacingConfig, RetryConfig
from nbbatch.pacing import Clock, Pacer, Sleep
from nbbatch.providers.base import GeneratedImage, ImageRequest, Provider, ReferenceImage
from nbbatch.retry import retrying
from nbbatch.storage import ImageStore, image_file_name, sha256_hex

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
LONGEST_SERVER_WAIT = 900.0  # seconds; a longer server-given delay counts as exhausted
REFERENCE_CACHE_SIZE = 16  # reference images kept in memory


@dataclass(frozen=True)
class Event:
    """Something the user may want to see. Levels: debug < info < warning < error."""

    kind: str  # attempt | retry | done | failed | pending | provider | stopping
    message: str
    key: tuple[str, int] | None = None
    provider: str | None = None
    level: str = "info"


@dataclass
class Progress:
    """Live counts over the whole manifest, updated as outcomes land."""

    total: int
    done: int
    failed: int
    pending: int
    started_at: float
    in_flight: int = 0
    requests: int = 0
    done_this_run: int = 0
    failed_this_run: int = 0
    providers: dict[str, str] = field(default_factory=dict)  # name -> state shown to the user


@dataclass(frozen=True)
class Budget:
    max_images: int | None = None
    max_cost: float | None = None
    max_duration: float | None = None  # seconds


@dataclass(frozen=True)
class RunSummary:
    counts: Counts
    cost: CostSummary
    exit_code: ExitCode
    stop_reason: str | None
    requests: int
    done_this_run: int
    failed_this_run: int
    elapsed: float


EventSink = Callable[[Event, Progress], None]


class _Halted(Exception):
    """Raised inside an image job when the run stopped dispatching: the image stays pending."""


class _Rerouted(TransientError):
    """This image's provider was dropped; another attempt goes to the next one in line."""


class Lane:
    """One provider as the runner drives it: its pacer, its in-flight slots, its state."""

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

    def open_up(self) -> None:
        if not self.opened:
            self.opened = True
            for _ in range(self.concurrency - 1):
                self.slots.release()


@dataclass(eq=False)  # identity-hashed: jobs live in a set
class _Job:
    row: ImageRow
    item: Item
    candidates: tuple[str, ...]  # providers that may make it, preferred first
    lane: Lane | None = None  # the provider of the current (or last) attempt
    model: str = ""  # the model asked for in that attempt
    task: asyncio.Task | None = None
    working: bool = False  # a request or a save under way: a graceful stop lets it finish

    @property
    def key(self) -> tuple[str, int]:
        return (self.row.id, self.row.index)

    @property
    def provider(self) -> str | None:
        return self.lane.name if self.lane else None

    @property
    def label(self) -> str:
        return self.row.id if self.item.count == 1 else f"{self.row.id}#{self.row.index}"


class BatchRunner:
    def __init__(
        self,
        manifest: Manifest,
        ledger: Ledger,
        store: ImageStore,
        providers: Mapping[str, Provider],
        *,
        budget: Budget = Budget(),
        on_event: EventSink | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.manifest = manifest
        self.ledger = ledger
        self.store = store
        self.budget = budget
        self.retry: RetryConfig = manifest.retry
        self._on_event = on_event
        self._clock, self._wall, self._sleep = clock, wall, sleep
        rng = rng or random.Random()
        self.lanes = {
            name: Lane(name, provider, manifest.pacing, clock=clock, sleep=sleep, rng=rng,
                       model=_backup_model(manifest, name))
            for name, provider in providers.items()
        }
        failover = manifest.failover
        self.router = Router(
            list(self.lanes), trip_after=failover.trip_after if failover else 0,
            probe_every=failover.probe_every if failover else 0, clock=clock)
        self.items = {item.id: item for item in manifest.items}
        self._jobs: set[_Job] = set()
        self._changed = asyncio.Event()  # set whenever a job ends: wakes the dispatcher
        self._references: OrderedDict[Path, ReferenceImage] = OrderedDict()
        self.stop_reason: str | None = None
        self.fatal: FatalError | None = None
        self.quota: QuotaExhaustedError | None = None
        self.interrupted_by: ExitCode | None = None
        self._spent_this_run = 0.0
        self._dearest_seen = 0.0  # highest cost of one image this run
        self._dearest_listed = max((catalog.price(i.model, i.image_size, i.provider)
                                    for i in manifest.items), default=0.0)
        counts = ledger.counts()
        self.progress = Progress(
            total=counts.total, done=counts.done, failed=counts.failed, pending=counts.pending,
            started_at=clock(), providers={name: "ready" for name in self.lanes},
        )

    # -- control -----------------------------------------------------------------------

    def halt(self, reason: str, *, hard: bool = False) -> None:
        """Stop dispatching. Graceful: requests in flight finish and are saved. Hard (signal,
        fatal error): everything is cancelled and stays pending."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._emit(Event("stopping", reason, level="warning"))
        for job in list(self._jobs):
            if job.task and (hard or not job.working):
                job.task.cancel()
        self._changed.set()

    def interrupt(self, code: ExitCode) -> None:
        self.interrupted_by = self.interrupted_by or code
        name = "SIGINT" if code == ExitCode.SIGINT else "SIGTERM"
        self.halt(f"interrupted by {name}: in-flight images stay pending", hard=True)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, pending: list[ImageRow]) -> RunSummary:
        window = sum(lane.concurrency for lane in self.lanes.values()) * 4
        for row in pending:
            if self.stop_reason:
                break
            item = self.items.get(row.id)
            if item is None:
                continue
            usable = tuple(name for name in candidates(item, self.manifest.failover)
                           if name in self.lanes and not self.router.health[name].dropped)
            if not usable:
                continue  # stays pending for a later run
            if not await self._wait_for_room(window):
                break
            self._start(_Job(row, item, usable))
        while self._jobs:
            self._changed.clear()
            await self._changed.wait()
        await self._close_providers()
        return self._summary()

    async def _wait_for_room(self, window: int) -> bool:
        """Wait until another image may start; False when the run must stop dispatching."""
        while True:
            if self.stop_reason:
                return False
            reason = self._budget_reached()
            if reason and (not self._jobs or reason.startswith("--max-duration")):
                self.halt(reason)  # time is up at once; other budgets wait for what is running
                return False
            if reason is None and len(self._jobs) < window:
                return True
            self._changed.clear()
            await self._changed.wait()

    def _budget_reached(self) -> str | None:
        b, active = self.budget, len(self._jobs)
        elapsed = self._clock() - self.progress.started_at
        if b.max_duration is not None and elapsed >= b.max_duration:
            return f"--max-duration reached ({b.max_duration:g} s)"
        if b.max_images is not None and self.progress.done_this_run + active >= b.max_images:
            return f"--max-images reached ({b.max_images})"
        if b.max_cost is not None:
            # Count every active image at its full price: the budget is never overshot.
            committed = self._spent_this_run + active * self._max_price()
            if committed + self._max_price() > b.max_cost + 1e-9:
                return f"--max-cost reached (${self._spent_this_run:.3f} of ${b.max_cost:.2f})"
        return None

    def _max_price(self) -> float:
        """The most one image may cost: the catalog's prices, or more if tokens said so."""
        return max(self._dearest_listed, self._dearest_seen)

    def _start(self, job: _Job) -> None:
        self._jobs.add(job)
        job.task = asyncio.create_task(self._make_image(job))

        def finished(_: asyncio.Task) -> None:
            self._jobs.discard(job)
            self._changed.set()

        job.task.add_done_callback(finished)

    async def _make_image(self, job: _Job) -> None:
        try:
            request = self._request_for(job.item)
            async for attempt in retrying(self.retry, sleep=self._sleep,
                                          before_sleep=lambda s: self._retrying(job, s)):
                with attempt:
                    image = await self._attempt(job, request)
            await self._save(job, image)
        except TransientError as exc:
            self._set_pending(job, exc.kind, f"gave up after {self.retry.max_attempts} "
                              f"attempts this run: {exc.message}", level="warning")
        except (BlockedError, InvalidRequestError) as exc:
            self._set_failed(job, exc)
        except QuotaExhaustedError as exc:
            self._set_pending(job, exc.kind, exc.message, level="debug")
        except FatalError as exc:
            self.ledger.mark_pending(job.key, kind=exc.kind, message=exc.message)
            if self.router.all_dropped():
                self.halt(f"{exc.provider}: {exc.message}", hard=True)
        except LedgerError as exc:
            # Requests that cannot be recorded must not be sent (or paid for) at all.
            self.halt(f"the ledger cannot be written: {exc.message}", hard=True)
        except StorageError as exc:
            self.ledger.mark_pending(job.key, kind="storage", message=exc.message)
            self.halt(exc.message)
        except (_Halted, asyncio.CancelledError):
            pass  # stays pending; its attempts are already in the ledger
        except OSError as exc:  # reading a reference image that vanished since validation
            self._set_pending(job, "local", str(exc), level="error")

    async def _attempt(self, job: _Job, request: ImageRequest) -> GeneratedImage:
        while True:
            try:
                choice = self.router.choose(job.candidates)
            except NoProviderLeft:
                raise self.fatal or self.quota or _Halted() from None
            lane = job.lane = self.lanes[choice.provider]
            attempt = request
            if lane.name != job.item.provider:
                attempt = replace(request, model=lane.model or request.model)
            job.model = attempt.model
            async with lane.slots:
                started = await lane.pacer.wait_turn(
                    lambda choice=choice: self.router.still_valid(choice, job.candidates))
                if self.stop_reason:
                    raise _Halted
                if started is None:
                    self.router.failed_otherwise(choice)
                    continue  # switched away or dropped while this attempt waited
                return await self._send(job, lane, choice, attempt)

    async def _send(self, job: _Job, lane: Lane, choice: Choice,
                    request: ImageRequest) -> GeneratedImage:
        job.working = True
        self.progress.requests += 1
        self.progress.in_flight += 1
        started, t0 = self._wall(), self._clock()
        probe = " (probe)" if choice.probe else ""
        self._emit(Event("attempt", f"request {job.label} on {lane.name}{probe}", job.key,
                         lane.name, "debug"))
        try:
            image = await lane.provider.generate(request)
        except ProviderError as exc:
            job.working = False
            self._record(job, request, started, t0, exc.kind, exc)
            if not isinstance(exc, FatalError):
                lane.open_up()
            self._after_failure(job, lane, choice, exc)
            raise
        except asyncio.CancelledError:
            self._record(job, request, started, t0, "interrupted", None, possibly_billed=True)
            raise
        finally:
            self.progress.in_flight -= 1
        lane.open_up()
        self._record(job, request, started, t0, "success", None)
        if self.router.succeeded(choice):
            self._lane_state(lane, "ok", detail="recovered: serving again")
        elif not lane.pacer.is_paused():
            self._lane_state(lane, "ok")
        return image

    def _after_failure(self, job: _Job, lane: Lane, choice: Choice, exc: ProviderError) -> None:
        """Let one answer steer the provider: pause, switch away, or drop it. Raises when
        the image should go on differently than the answer itself says."""
        answer = exc
        if isinstance(exc, TransientError) and exc.overload:
            if self.router.overloaded(choice):
                self._lane_state(lane, "switched away", level="warning",
                                 detail=f"{self.router.trip_after} overloads in a row; probing "
                                 f"every {self.router.probe_every:g}s")
        else:
            self.router.failed_otherwise(choice)
        if isinstance(exc, TransientError) and exc.retry_after:
            if exc.retry_after > LONGEST_SERVER_WAIT:
                # Hours, not seconds (a Cloudflare 1015, a quota in disguise): waiting would
                # stall the whole run, so the provider is done for today.
                exc = QuotaExhaustedError(
                    f"asks to wait {exc.retry_after / 3600:.1f} h: {exc.message}",
                    provider=exc.provider, status=exc.status)
            else:
                lane.pacer.pause_for(exc.retry_after)
                self._lane_state(lane, f"paused {exc.retry_after:g}s (server asked)")
        if isinstance(exc, (QuotaExhaustedError, FatalError)):
            self._drop(lane, exc)
            if any(not self.router.health[name].dropped for name in job.candidates):
                raise _Rerouted(f"{lane.name}: {exc.message}") from exc
            if exc is not answer:
                raise exc

    def _record(
        self, job: _Job, request: ImageRequest, started: float, t0: float, outcome: str,
        exc: ProviderError | None, *, possibly_billed: bool = False,
    ) -> None:
        billed = possibly_billed or bool(getattr(exc, "possibly_billed", False))
        price = catalog.price(request.model, job.item.image_size, job.provider)
        self.ledger.record_attempt(job.key, Attempt(
            started_at=started, provider=job.provider, model=request.model, outcome=outcome,
            http_status=exc.status if exc else (200 if outcome == "success" else None),
            latency=self._clock() - t0, error=exc.message if exc else None,
            possibly_billed=billed, cost_usd=price if (billed or outcome == "success") else 0.0,
        ))

    async def _save(self, job: _Job, image: GeneratedImage) -> None:
        extension = EXTENSIONS.get(image.mime_type, "bin")
        relative = self.store.relative(
            image_file_name(job.row.id, job.row.index, job.item.count, extension))
        digest = sha256_hex(image.data)
        cost = catalog.image_cost(job.model, job.item.image_size, job.provider, image.usage)
        # Intent first: a crash between here and mark_done is finished by the next run's
        # recovery instead of paying for the image again.
        self.ledger.begin_save(job.key, file=relative, sha256=digest, bytes=len(image.data),
                               provider=job.provider, model=image.model or job.model,
                               cost_usd=cost, usage=dict(image.usage) or None)
        try:
            await asyncio.to_thread(self.store.write, relative, image.data, digest)
        except StorageError:
            self.ledger.clear_save(job.key)
            raise
        self.ledger.mark_done(job.key)
        job.working = False
        self._spent_this_run += cost
        self._dearest_seen = max(self._dearest_seen, cost)
        p = self.progress
        p.done, p.pending, p.done_this_run = p.done + 1, p.pending - 1, p.done_this_run + 1
        self._emit(Event("done", f"done {job.label} -> {relative} ({job.provider}, "
                         f"{image.model or job.model})", job.key, job.provider))

    # -- outcomes --------------------------------------------------------------------------

    def _retrying(self, job: _Job, state) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        self._emit(Event("retry", f"{job.label}: {getattr(error, 'message', error)} "
                         f"- retry {state.attempt_number + 1} in {wait:.1f}s",
                         job.key, job.provider, "debug"))

    def _set_pending(self, job: _Job, kind: str, message: str, *, level: str) -> None:
        self.ledger.mark_pending(job.key, kind=kind, message=message)
        self._emit(Event("pending", f"{job.label} stays pending: {message}", job.key,
                         job.provider, level))

    def _set_failed(self, job: _Job, exc: ProviderError) -> None:
        self.ledger.mark_failed(job.key, kind=exc.kind, message=exc.message,
                                provider=job.provider, model=job.model)
        p = self.progress
        p.failed, p.pending, p.failed_this_run = p.failed + 1, p.pending - 1, p.failed_this_run + 1
        self._emit(Event("failed", f"failed {job.label} ({exc.kind}): {exc.message}", job.key,
                         job.provider, "warning"))

    def _drop(self, lane: Lane, exc: QuotaExhaustedError | FatalError) -> None:
        if isinstance(exc, FatalError):
            self.fatal = self.fatal or exc
        else:
            self.quota = self.quota or exc
        if not self.router.drop(lane.name, exc.message):
            return
        what = "quota exhausted" if isinstance(exc, QuotaExhaustedError) else "rejected"
        self._lane_state(lane, f"dropped ({what})", level="error", detail=exc.message)
        if self.router.all_dropped() and isinstance(exc, QuotaExhaustedError):
            self.halt(f"quota exhausted on {', '.join(self.lanes)}: run again when it resets")

    def _lane_state(self, lane: Lane, state: str, *, level: str = "info", detail: str = "") -> None:
        previous = self.progress.providers.get(lane.name)
        if previous == state:
            return
        self.progress.providers[lane.name] = state
        if previous == "ready" and state == "ok":
            return  # the first answer is not news
        text = f"{lane.name}: {state}" + (f" - {detail}" if detail else "")
        self._emit(Event("provider", text, provider=lane.name, level=level))

    # -- helpers -----------------------------------------------------------------------

    def _request_for(self, item: Item) -> ImageRequest:
        return ImageRequest(
            prompt=item.prompt, model=item.model, aspect_ratio=item.aspect_ratio,
            image_size=item.image_size,
            references=tuple(self._reference(path) for path in item.references),
        )

    def _reference(self, path: Path) -> ReferenceImage:
        """Reference images are read when needed and a few are kept: batches often reuse one
        image, but 100,000 distinct ones must not all sit in memory."""
        if path in self._references:
            self._references.move_to_end(path)
        else:
            data = path.read_bytes()
            self._references[path] = ReferenceImage(_sniff_mime(data), data)
            if len(self._references) > REFERENCE_CACHE_SIZE:
                self._references.popitem(last=False)
        return self._references[path]

    def _emit(self, event: Event) -> None:
        if self._on_event:
            self._on_event(event, self.progress)

    async def _close_providers(self) -> None:
        for lane in self.lanes.values():
            with contextlib.suppress(Exception):
                await lane.provider.aclose()

    def _summary(self) -> RunSummary:
        counts = self.ledger.counts()
        if self.interrupted_by:
            code = self.interrupted_by
        elif self.fatal and (counts.pending or self.router.all_dropped()):
            code = self.fatal.exit_code
        elif counts.pending:
            code = ExitCode.TEMPFAIL
        elif counts.failed:
            code = ExitCode.FAILED
        else:
            code = ExitCode.OK
        reason = self.stop_reason
        if self.fatal:
            reason = f"{self.fatal.provider or 'provider'}: {self.fatal.message}"
        return RunSummary(
            counts=counts, cost=self.ledger.cost_summary(), exit_code=code, stop_reason=reason,
            requests=self.progress.requests, done_this_run=self.progress.done_this_run,
            failed_this_run=self.progress.failed_this_run,
            elapsed=self._clock() - self.progress.started_at,
        )


def _backup_model(manifest: Manifest, provider: str) -> str | None:
    config = manifest.providers.get(provider)
    return (config.model if config else None) or catalog.DEFAULT_MODEL.get(provider)


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
