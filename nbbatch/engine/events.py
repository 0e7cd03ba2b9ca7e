"""What a run tells whoever watches it: events, live progress, provider states.

The engine never prints. Each outcome reaches the caller (the CLI, a test) as an Event with
the live Progress; levels let the caller choose how much to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class EventKind(StrEnum):
    ATTEMPT = "attempt"  # a request is being sent
    RETRY = "retry"  # an attempt failed and another one will follow after a backoff
    DONE = "done"
    FAILED = "failed"
    PENDING = "pending"  # an image stays pending for a later run
    PROVIDER = "provider"  # a provider changed state (switched away, recovered, dropped...)
    STOPPING = "stopping"  # the run stopped dispatching
    GALLERY = "gallery"  # the contact sheet was brought up to date
    BATCH_JOB = "batch job"  # a batch job was recorded, created, polled, collected or closed


class Level(IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


class ProviderState(StrEnum):
    READY = "ready"  # nothing answered yet
    OK = "ok"
    RETRYING = "retrying"  # the last answer was a transient failure
    PAUSED = "paused"  # the server asked for quiet
    SWITCHED_AWAY = "switched away"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str
    key: tuple[str, int] | None = None
    provider: str | None = None
    level: Level = Level.INFO


@dataclass
class Progress:
    """Live counts over the whole manifest. The Recorder is the only writer of the counts,
    in the same step as the ledger; provider states are read from the steering on demand."""

    total: int
    done: int
    failed: int
    pending: int
    started_at: float
    in_flight: int = 0
    requests: int = 0
    retries: int = 0
    done_this_run: int = 0
    failed_this_run: int = 0
    jobs_open: int = 0  # batch mode: jobs recorded and not yet collected
    in_jobs: int = 0  # batch mode: images waiting in those jobs
    provider_states: Callable[[], Mapping[str, ProviderState]] = field(
        default=lambda: {}, repr=False)

    @property
    def providers(self) -> Mapping[str, ProviderState]:
        return self.provider_states()


EventSink = Callable[[Event, Progress], None]
