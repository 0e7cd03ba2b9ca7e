"""What every step of a batch run shares: the ledger, the batch clients, the recorder, the
retry policy for batch API calls, and how a job is described in events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from tenacity import RetryCallState

from nbbatch.engine.events import Event, EventKind, Level
from nbbatch.engine.pacing import Clock, Sleep
from nbbatch.engine.recorder import Recorder
from nbbatch.engine.retry import T, retried
from nbbatch.model import Item, Manifest
from nbbatch.providers.base import BatchClient, BatchStatus
from nbbatch.store.batch_jobs import BatchJobs, JobRecord
from nbbatch.store.ledger import Ledger
from nbbatch.store.records import Key


def request_key(key: Key) -> str:
    """The key a request goes under in a job: `id#index` (ids never contain '#')."""
    return f"{key[0]}#{key[1]}"


@dataclass
class BatchContext:
    manifest: Manifest
    ledger: Ledger
    clients: Mapping[str, BatchClient]
    recorder: Recorder
    emit: Callable[[Event], None]
    sleep: Sleep
    clock: Clock
    out_name: str

    def __post_init__(self) -> None:
        self.items: dict[str, Item] = {item.id: item for item in self.manifest.items}

    @property
    def jobs(self) -> BatchJobs:
        return self.ledger.batch

    async def call(self, job: JobRecord | str, call: Callable[[int], Awaitable[T]]) -> T:
        """A batch API call, retried with backoff on transient errors."""
        label = job if isinstance(job, str) else describe(job)

        def retrying(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self.emit(Event(EventKind.RETRY, f"{label}: {getattr(error, 'message', error)} - "
                            f"retry in {state.upcoming_sleep:.1f}s", level=Level.DEBUG))

        return await retried(call, self.manifest.retry, sleep=self.sleep, before_sleep=retrying)

    def job_event(self, job: JobRecord, message: str, level: Level = Level.INFO) -> None:
        self.emit(Event(EventKind.BATCH_JOB, f"{describe(job)}: {message}",
                        provider=job.provider, level=level))


def describe(job: JobRecord) -> str:
    return f"batch job {job.name or job.display_name} ({job.provider}, {job.model})"


def progress_text(status: BatchStatus) -> str:
    """`BATCH_STATE_RUNNING, 40/100 done, 2 failed`: what a poll found."""
    text = status.state
    if status.total:
        text += f", {status.succeeded}/{status.total} done"
    if status.failed:
        text += f", {status.failed} failed"
    return text
