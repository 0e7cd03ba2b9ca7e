"""Budgets: may another image start? Asked before every dispatch, answered from counts.

`--max-cost` and `--max-images` are hard caps: every image already in flight counts at the
most it may cost, so the budget is never overshot; every attempt, retries included, is asked
again before it is sent, with the attempts that may have been billed counted at full price.
`--max-duration` stops dispatching the moment it passes, whatever the jobs are waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nbbatch.engine.pacing import Clock

_EPSILON = 1e-9  # USD: float sums must not stop a run a rounding error early


class StopKind(StrEnum):
    MAX_DURATION = "max_duration"
    MAX_IMAGES = "max_images"
    MAX_COST = "max_cost"
    QUOTA = "quota"  # every provider's quota is gone
    FATAL = "fatal"  # a key was rejected, a model is unknown...
    INTERRUPTED = "interrupted"  # a signal
    LEDGER = "ledger"  # the ledger cannot be written
    STORAGE = "storage"  # an image cannot be written
    NO_WAIT = "no_wait"  # batch mode: jobs submitted, left live for a later run
    DEFECT = "defect"  # a defect in nbbatch itself stopped the run


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    message: str

    @property
    def waits_for_running(self) -> bool:
        """Whether images already under way may finish first (time is up at once)."""
        return self.kind in (StopKind.MAX_IMAGES, StopKind.MAX_COST)


@dataclass(frozen=True)
class Budget:
    max_images: int | None = None
    max_cost: float | None = None
    max_duration: float | None = None  # seconds


class BudgetGuard:
    def __init__(self, budget: Budget, *, clock: Clock, started_at: float) -> None:
        self.budget = budget
        self._clock = clock
        self._started_at = started_at

    def check(self, *, active: int, made: int, spent: float, reserved: float,
              next_cost: float) -> Stop | None:
        """Why the next image may not start, or None. `active`: images under way, which
        may cost `reserved` USD at most; `made`: images made this run; `spent`: USD spent
        this run; `next_cost`: the most the next image may cost."""
        b = self.budget
        if b.max_duration is not None and self._clock() - self._started_at >= b.max_duration:
            return Stop(StopKind.MAX_DURATION, f"--max-duration reached ({b.max_duration:g} s)")
        if b.max_images is not None and made + active >= b.max_images:
            return Stop(StopKind.MAX_IMAGES, f"--max-images reached ({b.max_images})")
        if b.max_cost is not None and spent + reserved + next_cost > b.max_cost + _EPSILON:
            if spent + reserved >= b.max_cost - _EPSILON:
                return Stop(StopKind.MAX_COST, f"--max-cost ${b.max_cost:.2f} reached")
            # Not reached: the next image alone might pass it, so it is not started.
            return Stop(StopKind.MAX_COST, f"--max-cost: stopped before ${b.max_cost:.2f}: "
                                           f"the next image may cost up to ${next_cost:.3f}")
        return None

    def check_attempt(self, *, spent: float, reserved: float) -> Stop | None:
        """Why no further request may be sent now (a retry included), or None. `reserved`:
        what the images under way may cost, this one's next attempt among them; an attempt
        that may have been billed (a timeout after sending) is in `spent` at its full price."""
        b = self.budget
        if b.max_duration is not None and self._clock() - self._started_at >= b.max_duration:
            return Stop(StopKind.MAX_DURATION, f"--max-duration reached ({b.max_duration:g} s)")
        if b.max_cost is not None and spent + reserved > b.max_cost + _EPSILON:
            return Stop(StopKind.MAX_COST,
                        f"--max-cost reached (${spent:.3f} of ${b.max_cost:.2f})")
        return None

    def deadline(self) -> float | None:
        """When --max-duration runs out, on the run's clock."""
        if self.budget.max_duration is None:
            return None
        return self._started_at + self.budget.max_duration
