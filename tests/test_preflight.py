"""Pre-flight on virtual time: checked providers start at full concurrency, a bad key or an
unknown model named by items stops the run before any generation request, a bad backup is
dropped at the start, and a route that says nothing leaves the first request alone."""

from __future__ import annotations

import pytest

from nbbatch.errors import ExitCode, FatalError, QuotaExhaustedError, UnknownModelError
from nbbatch.providers.base import CheckUnavailable
from tests.test_failover import FlakyProvider, overloaded, run_two, two_provider_manifest
from tests.test_runner import ScriptedProvider, manifest, run


class Checked(ScriptedProvider):
    """A scripted provider whose metadata route answers `answer` (None: all is well)."""

    def __init__(self, clock, answer=None, **kw):
        super().__init__(clock, **kw)
        self.answer = answer
        self.checked: list[str] = []

    async def check(self, model):
        self.checked.append(model)
        if self.answer is not None:
            raise self.answer


def test_a_checked_provider_starts_at_full_concurrency_from_its_first_request(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(8)], interval=1, concurrency=4)
    provider = Checked(clock, latency=10)
    summary, _, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.OK
    assert provider.checked == ["gemini-3-pro-image"]
    # Starts every interval from t=0: no waiting for the first answer.
    assert [t - provider.starts[0][0] for t, _ in provider.starts[:4]] == [0, 1, 2, 3]


def test_a_route_that_says_nothing_leaves_the_first_request_alone(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(4)], interval=1, concurrency=4)
    provider = Checked(clock, CheckUnavailable("404"), latency=10)
    run(tmp_path, m, provider, clock)
    assert provider.starts[1][0] - provider.starts[0][0] == 10  # waited for the first answer


@pytest.mark.parametrize(("answer", "kind", "code"), [
    (FatalError("API key not valid. Check GEMINI_API_KEY."), FatalError, ExitCode.AUTH),
    (UnknownModelError("models/x is not found"), UnknownModelError, ExitCode.USAGE),
])
def test_a_bad_key_or_model_named_by_items_stops_before_any_generation_request(
        tmp_path, clock, answer, kind, code):
    m = manifest(tmp_path, [f"p{i}" for i in range(7)])
    provider = Checked(clock, answer)
    with pytest.raises(kind) as caught:
        run(tmp_path, m, provider, clock)
    assert caught.value.exit_code == code
    assert provider.starts == []
    message = caught.value.message
    assert "pre-flight" in message and answer.message in message
    assert "used by p0, p1, p2, p3, p4 and 2 more" in message


@pytest.mark.parametrize("answer", [FatalError("API key rejected. Check OPENAI_API_KEY."),
                                    UnknownModelError("The model 'gpt-image-9' does not exist"),
                                    QuotaExhaustedError("insufficient_quota")])
def test_a_bad_backup_is_dropped_at_the_start_and_never_asked(tmp_path, clock, answer):
    m = two_provider_manifest(tmp_path, 6)
    gemini = Checked(clock, latency=1)
    openai = Checked(clock, answer, latency=1)
    summary, ledger, events = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    assert openai.checked == ["gpt-image-1"] and openai.starts == []
    assert {r.provider for r in ledger.rows()} == {"gemini"}
    dropped = [e for e in events if e.provider == "openai" and "dropped" in e.message]
    assert len(dropped) == 1 and answer.message in dropped[0].message


def test_with_the_backup_dropped_an_outage_of_the_primary_leaves_images_pending(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 4)
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: True, latency=1)
    openai = Checked(clock, FatalError("API key rejected"), latency=1)
    summary, _, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL and summary.counts.pending == 4
    assert openai.starts == []


def test_a_primary_out_of_quota_at_the_start_fails_over(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 3)
    gemini = Checked(clock, QuotaExhaustedError("per-day quota"), latency=1)
    openai = Checked(clock, latency=1)
    summary, ledger, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    assert gemini.starts == [] and {r.provider for r in ledger.rows()} == {"openai"}
