"""Batch mode, steps 1 and 3: open jobs are looked up or polled, and finished ones collected.

- A job recorded without a provider name (a kill mid-create, a lost answer) is looked up by
  its display name: found, it is live; not found, it was never created and its images go
  back to pending, to be submitted again.
- A finished job's results are streamed: each image is saved exactly as online (atomic file,
  SHA-256, cost at the batch price); a per-request error is what it would mean online
  (blocked, invalid -> failed; anything else -> pending again). An image is saved only while
  it still waits in that job, so a collection interrupted and run again saves nothing twice.
  Then the job is closed: images it returned nothing for go back to pending with its error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nbbatch.engine.batch_context import BatchContext, progress_text, request_key
from nbbatch.engine.events import Level
from nbbatch.errors import (
    BlockedError,
    InvalidRequestError,
    JobGoneError,
    Outcome,
    ProviderError,
    TransientError,
)
from nbbatch.providers.base import BatchStatus, GeneratedImage, JobPhase
from nbbatch.store.batch_jobs import JobMember, JobRecord
from nbbatch.store.records import Attempt


class Collector:
    def __init__(self, ctx: BatchContext, stopped: Callable[[], bool]) -> None:
        self.ctx = ctx
        self._stopped = stopped  # a signal came: leave the job as it is, for the next run

    async def visit(self, job: JobRecord) -> bool:
        """Bring one open job up to date; True while it stays open. ProviderErrors other
        than transient ones (a rejected key) propagate: the run stops."""
        ctx = self.ctx
        client = ctx.clients.get(job.provider)
        if client is None:
            return True  # its provider is not configured in this run: left for a later one
        try:
            if job.name is None:
                status = await ctx.call(job, lambda _: client.find(job.display_name))
                if status is None:
                    back = ctx.jobs.close(job.job_id, outcome="not created", error=None,
                                          kind=Outcome.TRANSIENT, message="its batch job was "
                                          "never created; it is submitted again")
                    ctx.job_event(job, f"was never created: {back} images go back to pending",
                                  Level.WARNING)
                    return False
                ctx.jobs.mark_live(job.job_id, name=status.name, state=status.state)
                ctx.job_event(job, f"found in the job list as {status.name}")
                job = ctx.jobs.job(job.job_id)
            name = job.name
            assert name is not None
            # A listed job may lack its results (lists leave inline ones out): get it.
            status = await ctx.call(job, lambda _: client.get(name))
        except JobGoneError as exc:
            back = ctx.jobs.close(job.job_id, outcome="gone", error=exc.message, kind=exc.kind,
                                  message=exc.message)
            ctx.job_event(job, f"{exc.message}: {back} images go back to pending", Level.WARNING)
            return False
        except TransientError as exc:
            ctx.job_event(job, f"could not be polled ({exc.message}); trying again later",
                          Level.WARNING)
            return True
        if (status.state, status.succeeded, status.failed) != (
                job.state, job.succeeded, job.failed):
            ctx.jobs.update_state(job.job_id, state=status.state, succeeded=status.succeeded,
                                  failed=status.failed)
            ctx.job_event(job, progress_text(status))
        if not status.phase.finished:
            return True
        if not status.results and status.succeeded:
            # Made images, but no word yet of where they are: closing now would send them
            # again (and pay twice). Ask again at the next poll.
            ctx.job_event(job, f"{status.state} with {status.succeeded} results not yet "
                          "available; trying again later", Level.WARNING)
            return True
        try:
            await ctx.call(job, lambda _: self._collect(job, status))
        except TransientError as exc:
            ctx.job_event(job, f"results could not be read ({exc.message}); trying again "
                          "later", Level.WARNING)
            return True
        return self._stopped()  # an interrupted collection is finished by the next run

    async def _collect(self, job: JobRecord, status: BatchStatus) -> None:
        ctx, jobs = self.ctx, self.ctx.jobs
        members = jobs.members(job.job_id)
        by_key = {request_key(m.key): m for m in members}
        started = job.submitted_at or job.created_at
        async for key, answer in ctx.clients[job.provider].results(status):
            if self._stopped():
                return
            member = by_key.get(key) if isinstance(key, str) else (
                members[key] if 0 <= key < len(members) else None)
            if (member is None or member.key[0] not in ctx.items
                    or not jobs.holds(job.job_id, member.key, member.fingerprint)):
                continue  # not ours, saved already, or changed in the manifest since
            await self._settle(job, member, answer, started)
        if self._stopped():
            return
        why = status.error or f"the job ended {status.phase.value} without a result for it"
        if status.phase == JobPhase.SUCCEEDED:
            why = "the job returned no result for it"
        back = jobs.close(job.job_id, outcome=status.phase.value, error=status.error,
                          kind=Outcome.TRANSIENT, message=f"batch job {job.name}: {why}")
        note = f"; {back} images back to pending" if back else ""
        level = Level.INFO if status.phase == JobPhase.SUCCEEDED else Level.WARNING
        ctx.job_event(job, f"collected ({status.state}){note}", level)

    async def _settle(self, job: JobRecord, member: JobMember,
                      answer: GeneratedImage | ProviderError, started: float) -> None:
        ctx, key = self.ctx, member.key
        item = ctx.items[key[0]]
        record, label = ctx.recorder, item.label(key[1])
        if isinstance(answer, GeneratedImage):
            cost = await record.save_image(key, item, job.provider, job.model, answer,
                                           batch=True)
            self._attempt(job, member, started, Outcome.SUCCESS, None, cost)
        elif isinstance(answer, BlockedError | InvalidRequestError):
            self._attempt(job, member, started, answer.kind, answer, 0.0)
            record.fail_image(key, label, job.provider, job.model, answer)
        else:
            self._attempt(job, member, started, answer.kind, answer, 0.0)
            record.pending_image(key, label, job.provider, answer.kind,
                                 f"batch job {job.name}: {answer.message}", level=Level.INFO)
        ctx.jobs.release(job.job_id, key)

    def _attempt(self, job: JobRecord, member: JobMember, started: float, outcome: str,
                 exc: ProviderError | None, cost: float) -> None:
        self.ctx.ledger.record_attempt(member.key, Attempt(
            started_at=started, provider=job.provider, model=job.model, outcome=outcome,
            http_status=exc.status if exc else 200, latency=time.time() - started,
            error=exc.message if exc else None, cost_usd=cost))
