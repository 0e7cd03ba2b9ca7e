"""What a run tells whoever watches it: events, live progress, provider states.

The engine never prints. Each outcome reaches the caller (the CLI, a test) as an Event with
the live Progress; levels let the caller choose how much to show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class EventKind(StrEnum):
    STARTED = "started"  # the run begins: what it will do, where, with which providers
    ATTEMPT = "attempt"  # a request is being sent
    RETRY = "retry"  # an attempt failed and another one will follow after a backoff
    DONE = "done"
    FAILED = "failed"
    PENDING = "pending"  # an image stays pending for a later run
    RENAMED = "renamed"  # its own file name was taken by a file that is kept: saved as another
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
    RETRYING = "retrying"  # images are waiting out a backoff after failing here
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


class Watcher:
    """The caller's event sink, guarded: its failure (a closed pipe, a full log disk, a bug
    in a display) must never reach the bookkeeping. The first failure is kept in `error`
    for the summary, and the sink is told no more."""

    def __init__(self, sink: EventSink | None) -> None:
        self._sink = sink
        self.error: str | None = None

    def __call__(self, event: Event, progress: Progress) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event, progress)
        except Exception as exc:
            self._sink = None
            self.error = f"{type(exc).__name__}: {exc}"


def start_message(*, pending: int, total: int, manifest: object, out: object,
                  providers: Sequence[str], mode: str) -> str:
    """The first line a run tells: what it will do, where, with which providers."""
    return (f"start: {pending} of {total} images pending; manifest {manifest}; output {out}; "
            f"providers {', '.join(providers) or 'none needed'}; mode {mode}")
