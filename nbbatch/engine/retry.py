"""Per-image retries: tenacity, full-jitter exponential backoff, never sooner than the server asks.

Only TransientError is retried; blocked, invalid, quota and fatal outcomes pass straight
through to the runner, which records or acts on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from nbbatch.errors import TransientError
from nbbatch.model import RetryConfig

T = TypeVar("T")


class wait_backoff_or_server_delay(wait_base):
    """The larger of the jittered backoff and the delay the server asked for."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome else None
        if isinstance(error, TransientError) and error.retry_after:
            wait = max(wait, error.retry_after)
        return wait


def backoff_wait(config: RetryConfig) -> wait_base:
    jitter = wait_random_exponential(
        multiplier=config.initial_delay, min=config.initial_delay, max=config.max_delay
    )
    return wait_backoff_or_server_delay(jitter)


def retrying(
    config: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(config.max_attempts),
        wait=backoff_wait(config),
        retry=retry_if_exception_type(TransientError),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


async def retried(
    call: Callable[[int], Awaitable[T]],
    config: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> T:
    """`await call(attempt_number)` until it does not raise TransientError, backing off as
    above; the last TransientError once attempts run out (batch API calls: create, poll)."""
    async for attempt in retrying(config, sleep=sleep, before_sleep=before_sleep):
        with attempt:
            return await call(attempt.retry_state.attempt_number)
    raise AssertionError("tenacity re-raises the last error")  # pragma: no cover
