"""Batch jobs in the simulator, shared by its Gemini and OpenAI batch APIs.

A job's requests are checked and decided when it is created (the same outcomes and fault
rates as online requests, drawn from the same seeded generator); they then finish evenly
over `batch_duration` seconds, and the job ends as `batch_outcome` says. A cancel stops it
where it is: what finished before it keeps its result. Results are drawn (images included)
only when they are read, so a 1,000-image responses file costs no memory until it is sent.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbbatch.sim.core import Decision, SimResponse, SimulatorCore

Render = Callable[[Decision], tuple[SimResponse, str]]


@dataclass
class SimRequest:
    key: str
    prompt: str
    decision: Decision | None  # None: refused at the front door (`refusal` is the answer)
    render: Render | None = None
    refusal: SimResponse | None = None


@dataclass
class SimJob:
    name: str
    provider: str
    display_name: str
    model: str
    created: float  # on the simulator's clock
    duration: float
    outcome: str  # succeeded | failed | expired, when it runs to its end
    requests: list[SimRequest]
    inline: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    input_file: str | None = None
    cancelled: float | None = None

    def phase(self, now: float) -> str:
        """pending | running | succeeded | failed | expired | cancelled."""
        if self.cancelled is not None:
            return "cancelled"
        if now >= self.created + self.duration:
            return self.outcome
        return "pending" if now < self.created + 0.1 * self.duration else "running"

    def finished_by(self, now: float) -> int:
        """Requests that have their result by `now` (none in a job that failed)."""
        if self.outcome == "failed" and now >= self.created + self.duration:
            return 0
        until = now if self.cancelled is None else min(now, self.cancelled)
        if self.duration <= 0:
            return len(self.requests)
        share = (until - self.created) / self.duration
        done = int(len(self.requests) * max(0.0, min(1.0, share)))
        if self.outcome == "expired" and self.cancelled is None:
            done = min(done, len(self.requests) // 2)  # expired: half of them never ran
        return done



def answer(request: SimRequest) -> tuple[SimResponse, str]:
    """The response a request of a job gets, drawn now, and its outcome."""
    if request.decision is None or request.render is None:
        assert request.refusal is not None
        return request.refusal, "invalid"
    return request.render(request.decision)


class BatchStore:
    """One API's jobs and files, kept on its core (`core.state`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, SimJob] = {}
        self.files: dict[str, dict[str, Any]] = {}  # name -> metadata, with "content" bytes
        self.uploads: dict[str, dict[str, Any]] = {}  # resumable uploads under way

    @staticmethod
    def of(core: SimulatorCore, api: str) -> BatchStore:
        with core.state_lock:
            store = core.state.get(api)
            if store is None:
                store = core.state[api] = BatchStore()
        assert isinstance(store, BatchStore)
        return store

    def add(self, job: SimJob) -> None:
        with self.lock:
            self.jobs[job.name] = job

    def job(self, name: str) -> SimJob | None:
        with self.lock:
            return self.jobs.get(name)

    def listing(self) -> list[SimJob]:
        """Newest first, as the real list APIs answer."""
        with self.lock:
            return list(reversed(self.jobs.values()))


def new_id(length: int = 16) -> str:
    return secrets.token_hex(length)[:length * 2]
