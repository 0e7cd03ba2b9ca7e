"""Batch mode, step 2: pending images that are in no live job go out as new jobs.

Images are grouped by provider and model (failover does not apply to batch jobs), in jobs
of at most `batch.max_requests`. Each job is recorded in the ledger with its images before
anything is sent; the create call is retried with backoff, and before every retry the job is
looked up by its display name, so an answer that was lost never makes a second job.
Budgets count images here, at the batch price.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from nbbatch.engine.batch_context import BatchContext, describe, request_key
from nbbatch.engine.budget import BudgetGuard, Stop
from nbbatch.engine.events import Level
from nbbatch.engine.requests import RequestBuilder
from nbbatch.errors import FatalError, ProviderError, TransientError
from nbbatch.model import Item
from nbbatch.providers.base import BatchClient, BatchItem, BatchStatus
from nbbatch.store.batch_jobs import JobRecord, display_name
from nbbatch.store.records import ImageRow

Member = tuple[ImageRow, Item]


class JobRequests:
    """A job's requests, built afresh on each pass (references read through a small cache),
    so a 1,000-image job never holds every reference image at once."""

    def __init__(self, members: Sequence[Member], builder: RequestBuilder) -> None:
        self._members, self._builder = members, builder

    def __iter__(self) -> Iterator[BatchItem]:
        for row, item in self._members:
            yield BatchItem(request_key((row.id, row.index)), self._builder.request_for(item))

    def __len__(self) -> int:
        return len(self._members)


class Submitter:
    def __init__(self, ctx: BatchContext, budget: BudgetGuard) -> None:
        self.ctx = ctx
        self.budget = budget
        self.submitted = 0  # images sent in new jobs this run
        self.committed = 0.0  # USD those images may cost, at the batch price
        self.stop: Stop | None = None
        self._builder = RequestBuilder()
        self._refused: set[tuple[str, str]] = set()  # provider, model: create refused

    async def submit(self) -> None:
        """Send every submittable image the budgets allow. FatalError stops the run."""
        groups: dict[tuple[str, str], list[Member]] = {}
        pricing = self.ctx.recorder.pricing
        for row in self.ctx.jobs.submittable():
            item = self.ctx.items.get(row.id)
            if item is None or item.provider not in self.ctx.clients:
                continue
            price = pricing.list_price(item, item.provider, item.model, batch=True,
                                       dearest=True)
            stop = self.budget.check(active=0, made=self.submitted, spent=self.committed,
                                     reserved=0.0, next_cost=price)
            if stop is not None:
                self.stop = stop
                break
            groups.setdefault((item.provider, item.model), []).append((row, item))
            self.submitted += 1
            self.committed += price
        size = self.ctx.manifest.batch.max_requests
        for (provider, model), members in groups.items():
            for start in range(0, len(members), size):
                if (provider, model) not in self._refused:
                    await self._job(provider, model, members[start:start + size])

    async def _job(self, provider: str, model: str, members: list[Member]) -> None:
        ctx = self.ctx
        client = ctx.clients[provider]
        display = display_name(ctx.out_name)
        job_id = ctx.jobs.record_job(
            provider=provider, model=model, display=display,
            images=[((row.id, row.index), item.fingerprint) for row, item in members])
        job = ctx.jobs.job(job_id)
        requests = JobRequests(members, self._builder)
        try:
            input_file = await ctx.call(job, lambda _: client.prepare(display, model, requests))
        except (ProviderError, OSError) as exc:  # no create call went out: nothing to find
            self._not_created(job, exc)
            return
        if input_file is not None:
            ctx.jobs.set_input_file(job_id, input_file)
        try:
            status = await ctx.call(job, lambda n: self._create(client, job, requests,
                                                                input_file, n))
        except TransientError as exc:
            # Whether the job exists is unknown: it stays recorded, and the next run looks
            # it up by its display name before its images go anywhere else.
            ctx.job_event(job, f"not confirmed ({exc.message}); the next run looks for it "
                          "before sending its images again", Level.WARNING)
            return
        except (ProviderError, OSError) as exc:
            self._not_created(job, exc)
            return
        ctx.jobs.mark_live(job_id, name=status.name, state=status.state)
        ctx.job_event(ctx.jobs.job(job_id), f"submitted with {len(members)} images "
                      f"({status.state})")

    def _not_created(self, job: JobRecord, exc: Exception) -> None:
        """The job was refused (or could not be built): its images go back to pending with
        the reason, and nothing more goes to that model this run. FatalError stops it."""
        message = exc.message if isinstance(exc, ProviderError) else str(exc)
        kind = exc.kind if isinstance(exc, ProviderError) else "local"
        self.ctx.jobs.close(job.job_id, outcome="not created", error=message, kind=kind,
                            message=f"its batch job was not created: {message}")
        self._refused.add((job.provider, job.model))
        self.ctx.job_event(job, f"not created: {message}", Level.ERROR)
        if isinstance(exc, FatalError):
            raise exc

    async def _create(self, client: BatchClient, job: JobRecord, requests: JobRequests,
                      input_file: str | None, attempt: int) -> BatchStatus:
        if attempt > 1:  # the last try may have made the job even if its answer was lost
            found = await client.find(job.display_name)
            if found is not None:
                self.ctx.job_event(job, f"found in the job list as {found.name} after a "
                                   "failed create call", Level.WARNING)
                return found
        return await client.create(job.display_name, job.model, requests, input_file)


def submitted_line(jobs: Sequence[JobRecord], waiting: int) -> str:
    """How many images are in which live jobs: what --no-wait reports."""
    names = "; ".join(f"{describe(job)}: {job.request_count} images" for job in jobs[:5])
    more = f"; and {len(jobs) - 5} more" if len(jobs) > 5 else ""
    return (f"--no-wait: {waiting} images wait in {len(jobs)} live batch "
            f"job{'s' if len(jobs) != 1 else ''} ({names}{more}); run again later to collect "
            "them")
