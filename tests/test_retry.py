import asyncio
import random

import pytest

from nbbatch.engine.retry import retrying
from nbbatch.errors import BlockedError, TransientError
from nbbatch.model import RetryConfig


def run_with_failures(errors, config, clock):
    calls = []

    async def main():
        async for attempt in retrying(config, sleep=clock.sleep):
            with attempt:
                calls.append(clock.now)
                if len(calls) <= len(errors):
                    raise errors[len(calls) - 1]
                return "ok"

    return asyncio.run(main()), calls


def test_backoff_is_exponential_with_full_jitter_within_bounds(clock):
    random.seed(7)
    config = RetryConfig(max_attempts=6, initial_delay=2, max_delay=10)
    result, _ = run_with_failures([TransientError("503")] * 5, config, clock)
    assert result == "ok"
    caps = [2, 4, 8, 10, 10]
    assert len(clock.sleeps) == 5
    for wait, cap in zip(clock.sleeps, caps, strict=False):
        assert 2 <= wait <= cap
    assert clock.sleeps[0] == 2  # the first wait's range is [initial, initial]


def test_server_delay_is_never_undercut(clock):
    config = RetryConfig(max_attempts=3, initial_delay=1, max_delay=4)
    errors = [TransientError("429", retry_after=58.0), TransientError("429", retry_after=0.5)]
    result, calls = run_with_failures(errors, config, clock)
    assert result == "ok"
    assert clock.sleeps[0] == 58.0
    assert 1 <= clock.sleeps[1] <= 2
    assert calls[1] - calls[0] == 58.0


def test_attempts_are_bounded_and_the_last_error_is_raised(clock):
    config = RetryConfig(max_attempts=3, initial_delay=1, max_delay=1)
    with pytest.raises(TransientError, match="third"):
        run_with_failures(
            [TransientError("first"), TransientError("second"), TransientError("third"),
             TransientError("never")], config, clock)
    assert clock.sleeps == [1, 1]


def test_permanent_outcomes_are_not_retried(clock):
    with pytest.raises(BlockedError):
        run_with_failures([BlockedError("IMAGE_SAFETY")], RetryConfig(), clock)
    assert clock.sleeps == []
