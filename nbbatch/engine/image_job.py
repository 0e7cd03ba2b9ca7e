"""Making one image: attempts (each routed, paced and recorded), retries, then the save.

A failed image is a ledger row, never an exception that escapes: every outcome ends in
`make`, which records it and tells the dispatcher when the whole run must stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from tenacity import RetryCallState

from nbbatch.engine.budget import Stop, StopKind
from nbbatch.engine.events import Event, EventKind, Level
from nbbatch.engine.failover import Choice, NoProviderLeft
from nbbatch.engine.job import ImageJob
from nbbatch.engine.pacing import Sleep
from nbbatch.engine.recorder import Recorder, Ticket
from nbbatch.engine.requests import ReferenceGone, RequestBuilder
from nbbatch.engine.retry import retrying
from nbbatch.engine.steering import Lane, Steering
from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    LedgerError,
    Outcome,
    ProviderError,
    QuotaExhaustedError,
    StorageError,
    TransientError,
    describe_defect,
)
from nbbatch.model import RetryConfig
from nbbatch.providers.base import GeneratedImage, ImageRequest


class Halted(Exception):
    """Raised inside an image job when the run stopped dispatching: the image stays pending."""


class OverBudget(Halted):
    """A budget ran out before this attempt could be sent: the run stops dispatching."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.message)
        self.stop = stop


class ImageMaker:
    def __init__(
        self, steering: Steering, recorder: Recorder, retry: RetryConfig, *,
        halt: Callable[[Stop, bool], None], stopped: Callable[[], bool],
        may_send: Callable[[], Stop | None], emit: Callable[[Event], None], sleep: Sleep,
    ) -> None:
        self.steering, self.recorder, self.retry = steering, recorder, retry
        self._halt, self._stopped, self._may_send = halt, stopped, may_send
        self._emit, self._sleep = emit, sleep
        self._requests = RequestBuilder()

    async def make(self, job: ImageJob) -> None:
        try:
            await self._make(job)
        except LedgerError as exc:
            # Requests that cannot be recorded must not be sent (or paid for) at all.
            self._halt(Stop(StopKind.LEDGER, f"the ledger cannot be written: {exc.message}"),
                       True)
        except (Halted, asyncio.CancelledError):
            pass  # stays pending; its attempts are already in the ledger
        except Exception as exc:
            # A defect in nbbatch, not an answer: stop the whole run (it may hit every image)
            # with this one pending and said, instead of a task exception nobody collects.
            defect = f"internal error ({describe_defect(exc)}); please report it"
            self._halt(Stop(StopKind.DEFECT, f"{defect}: images in flight stay pending"), True)
            self.recorder.pending(job, "internal", defect, level=Level.ERROR)

    async def _make(self, job: ImageJob) -> None:
        record = self.recorder
        try:
            request = self._requests.request_for(job.item)
            async for attempt in retrying(self.retry, sleep=self._backoff,
                                          before_sleep=lambda s: self._retrying(job, s)):
                with attempt:
                    await self._attempt(job, request)
        except TransientError as exc:
            record.pending(job, exc.kind, f"gave up after {self.retry.max_attempts} attempts "
                           f"this run: {exc.message}", level=Level.WARNING)
        except (BlockedError, InvalidRequestError) as exc:
            record.failed(job, exc)
        except QuotaExhaustedError as exc:
            record.pending(job, exc.kind, exc.message, level=Level.DEBUG)
            if self.steering.all_dropped():
                names = ", ".join(self.steering.lanes)
                self._halt(Stop(StopKind.QUOTA, f"quota exhausted on {names}: run again when "
                                                "it resets"), False)
        except FatalError as exc:
            record.pending(job, exc.kind, exc.message, level=Level.DEBUG)
            record.stuck_on_fatal += 1
            if self.steering.all_dropped():
                self._halt(Stop(StopKind.FATAL, f"{exc.provider}: {exc.message}"), True)
        except StorageError as exc:
            record.ledger.mark_pending(job.key, kind="storage", message=exc.message)
            self._halt(Stop(StopKind.STORAGE, exc.message), False)
        except OverBudget as exc:
            self._halt(exc.stop, False)
        except ReferenceGone as exc:
            record.pending(job, "reference", str(exc), level=Level.ERROR)
        finally:
            job.end_backoff()

    async def _backoff(self, seconds: float) -> None:
        """Wait before a retry, unless the run has stopped meanwhile (a deadline passed)."""
        if self._stopped():
            raise Halted
        await self._sleep(seconds)

    async def _attempt(self, job: ImageJob, request: ImageRequest) -> None:
        """Route, pace and send one attempt; on success save the image, all in one in-flight
        slot, so no more images are received and waiting to be saved than slots allow."""
        router = self.steering.router
        job.end_backoff()
        while True:
            try:
                choice = router.choose(job.candidates)
            except NoProviderLeft:
                raise self.steering.fatal or self.steering.quota or Halted() from None
            lane = job.lane = self.steering.lanes[choice.provider]
            attempt = request
            if lane.name != job.item.provider:
                attempt = replace(request, model=lane.model or request.model)
            job.model = attempt.model

            def wanted(choice: Choice = choice) -> bool:
                return not self._stopped() and router.still_valid(choice, job.candidates)

            async with lane.slots:
                started = await lane.pacer.wait_turn(wanted)
                if self._stopped():
                    raise Halted
                if started is None:
                    router.failed_otherwise(choice)
                    continue  # switched away or dropped while this attempt waited
                async with lane.sending():
                    if not router.still_valid(choice, job.candidates):
                        router.failed_otherwise(choice)
                        continue  # it tripped while this attempt waited to go alone
                    try:
                        # Asked again before every attempt: a retry may cost as much as the
                        # first one.
                        if (stop := self._may_send()) is not None:
                            raise OverBudget(stop)
                        self.recorder.store.check_room()  # nothing is bought that is not kept
                    except (OverBudget, StorageError):
                        router.failed_otherwise(choice)
                        raise
                    image, ticket = await self._send(job, lane, choice, attempt)
                await self.recorder.save(job, image, ticket)  # still holding the slot
                return

    async def _send(self, job: ImageJob, lane: Lane, choice: Choice,
                    request: ImageRequest) -> tuple[GeneratedImage, Ticket]:
        ticket = self.recorder.start_attempt(job, request.model)
        job.working = True
        progress = self.recorder.progress
        progress.requests += 1
        progress.in_flight += 1
        probe = " (probe)" if choice.probe else ""
        self._emit(Event(EventKind.ATTEMPT, f"request {job.label} on {lane.name}{probe}",
                         job.key, lane.name, Level.DEBUG))
        try:
            image = await lane.provider.generate(request)
        except ProviderError as exc:
            job.working = False
            self.recorder.finish_attempt(job, ticket, exc.kind, exc)
            self.steering.failed(lane, choice, exc, job.candidates)
            raise
        except asyncio.CancelledError:
            self.recorder.finish_attempt(job, ticket, Outcome.INTERRUPTED, None,
                                         possibly_billed=True)
            raise
        finally:
            progress.in_flight -= 1
        self.recorder.finish_attempt(job, ticket, Outcome.SUCCESS, None, image=image)
        self.steering.succeeded(lane, choice)
        return image, ticket

    def _retrying(self, job: ImageJob, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.recorder.progress.retries += 1
        if job.lane is not None:  # the provider shows "retrying" while the backoff lasts
            job.lane.backing_off += 1
            job.backing_off = job.lane
        self._emit(Event(EventKind.RETRY, f"{job.label}: {getattr(error, 'message', error)} "
                         f"- retry {state.attempt_number + 1} in {state.upcoming_sleep:.1f}s",
                         job.key, job.provider, Level.DEBUG))
