"""The batch loop against a scripted provider on virtual time."""

import asyncio
import hashlib
import io
import itertools
from dataclasses import replace

import pytest
from PIL import Image

from nbbatch.engine.budget import Budget
from nbbatch.engine.dispatcher import Dispatcher
from nbbatch.engine.planned import planned_images
from nbbatch.errors import (
    BlockedError,
    ExitCode,
    FatalError,
    QuotaExhaustedError,
    TransientError,
)
from nbbatch.model import Interval, Item, Manifest, PacingConfig, RetryConfig
from nbbatch.providers.base import GeneratedImage, Provider
from nbbatch.store.files import ImageStore
from nbbatch.store.ledger import Ledger


def png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


class ScriptedProvider(Provider):
    """Answers each prompt from a script of outcomes (errors to raise), then succeeds."""

    name = "gemini"

    def __init__(self, clock, *, latency=0.0, script=None):
        self.clock = clock
        self.latency = latency
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.starts: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, request):
        self.starts.append((self.clock.now, request.prompt))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.clock.sleep(self.latency)
            outcomes = self.script.get(request.prompt)
            if outcomes:
                raise outcomes.pop(0)
            return GeneratedImage(png(), "image/png", request.model, {"candidatesTokenCount": 1120})
        finally:
            self.in_flight -= 1


def manifest(tmp_path, prompts, *, interval=1.0, concurrency=2, attempts=3, count=1):
    items = tuple(
        Item(id=f"p{i}", prompt=p, provider="gemini", model="gemini-3-pro-image", count=count)
        for i, p in enumerate(prompts)
    )
    return Manifest(
        path=tmp_path / "m.yaml", output=tmp_path / "out", providers={},
        pacing=PacingConfig(Interval(interval, interval), concurrency),
        retry=RetryConfig(max_attempts=attempts, initial_delay=1, max_delay=4),
        failover=None, items=items,
    )


def run(tmp_path, m, provider, clock, budget=None):
    """Run `m` on virtual time; `provider` serves "gemini", or is a name -> provider map."""
    providers = provider if isinstance(provider, dict) else {"gemini": provider}
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    store = ImageStore(out)
    store.prepare()
    ledger = Ledger.open(out / "ledger.db")
    ledger.sync(planned_images(m))
    events = []
    runner = Dispatcher(m, ledger, store, providers, budget=budget,
                         on_event=lambda e, p: events.append(e), clock=clock, wall=clock,
                         sleep=clock.sleep)
    summary = asyncio.run(runner.run(ledger.pending()))
    return summary, ledger, events


def test_every_image_is_made_once_and_recorded(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b", "c"], count=1)
    provider = ScriptedProvider(clock)
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.OK
    assert summary.counts.done == 3
    assert len(provider.starts) == 3
    rows = {r.id: r for r in ledger.rows()}
    assert rows["p0"].file == "images/p0.png"
    assert (tmp_path / "out/images/p0.png").read_bytes() == png()
    assert rows["p0"].provider == "gemini" and rows["p0"].model == "gemini-3-pro-image"
    assert rows["p0"].cost_usd == pytest.approx(0.134)


def test_count_makes_numbered_files(tmp_path, clock):
    m = manifest(tmp_path, ["a"], count=3)
    summary, _, _ = run(tmp_path, m, ScriptedProvider(clock), clock)
    assert summary.counts.done == 3
    assert sorted(p.name for p in (tmp_path / "out/images").iterdir()) == [
        "p0-1.png", "p0-2.png", "p0-3.png"]


def test_transient_errors_are_retried_and_every_attempt_recorded(tmp_path, clock):
    m = manifest(tmp_path, ["a"])
    provider = ScriptedProvider(clock, script={"a": [TransientError("overloaded", status=503)] * 2})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.OK
    outcomes = [a.outcome for a in ledger.attempts(("p0", 1))]
    assert outcomes == ["transient", "transient", "success"]
    assert ledger.pending() == []


def test_attempts_exhausted_leaves_the_image_pending_with_its_error(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b"], attempts=2)
    provider = ScriptedProvider(clock, script={"a": [TransientError("overloaded", status=503)] * 5})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    [row] = ledger.pending()
    assert row.id == "p0" and row.error_kind == "transient" and "overloaded" in row.error_message
    assert summary.counts.done == 1


def test_server_delay_pauses_the_provider_for_every_image(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b"], interval=1, concurrency=1)
    provider = ScriptedProvider(
        clock, script={"a": [TransientError("429", status=429, retry_after=40, overload=True)]})
    summary, _, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.OK
    first = provider.starts[0][0]
    later = [t for t, _ in provider.starts[1:]]
    assert all(t >= first + 40 for t in later)  # "b" waited too, not only "a"


def test_blocked_images_fail_without_retry_and_exit_3(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b"])
    provider = ScriptedProvider(clock, script={"a": [BlockedError("IMAGE_SAFETY")]})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.FAILED
    assert [p for _, p in provider.starts].count("a") == 1
    row = next(r for r in ledger.rows() if r.id == "p0")
    assert row.status == "failed" and row.error_kind == "blocked"


def test_fatal_error_aborts_after_exactly_one_request(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(10)], concurrency=4, interval=0)
    provider = ScriptedProvider(
        clock, latency=5, script={f"p{i}": [FatalError("API key not valid")] for i in range(10)})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.AUTH
    assert len(provider.starts) == 1
    assert ledger.counts().pending == 10


def test_daily_quota_stops_cleanly_with_images_pending(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b", "c", "d"], concurrency=1)
    provider = ScriptedProvider(clock, script={"b": [QuotaExhaustedError("per day")]})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert [p for _, p in provider.starts] == ["a", "b"]  # nothing after the quota answer
    assert ledger.counts().done == 1 and ledger.counts().pending == 3
    assert "quota" in summary.stop_reason


def test_concurrency_bounds_requests_in_flight(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(12)], interval=0.5, concurrency=3)
    provider = ScriptedProvider(clock, latency=10)
    summary, _, _ = run(tmp_path, m, provider, clock)
    assert summary.counts.done == 12
    assert provider.max_in_flight == 3


def test_throughput_reaches_the_paced_rate_when_latency_is_high(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(30)], interval=2, concurrency=8)
    provider = ScriptedProvider(clock, latency=10)
    run(tmp_path, m, provider, clock)
    starts = [t for t, _ in provider.starts]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The first start waits for the provider's first answer (one request probes the key).
    assert gaps[0] == 10 and all(g == 2 for g in gaps[1:])


def test_max_images_budget_is_never_overshot(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(10)], concurrency=4, interval=0.1)
    provider = ScriptedProvider(clock, latency=3)
    summary, ledger, _ = run(tmp_path, m, provider, clock, Budget(max_images=4))
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert ledger.counts().done == 4 and len(provider.starts) == 4
    assert "max-images" in summary.stop_reason


def test_max_cost_budget(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(10)], concurrency=2, interval=0.1)
    provider = ScriptedProvider(clock, latency=1)
    _summary, ledger, _ = run(tmp_path, m, provider, clock, Budget(max_cost=0.5))
    assert ledger.cost_summary().spent.usd <= 0.5
    assert ledger.counts().done == 3  # 3 x $0.134 fits, a fourth would not


def test_unchanged_done_images_are_never_requested_again(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b"])
    run(tmp_path, m, ScriptedProvider(clock), clock)
    again = ScriptedProvider(clock)
    summary, _, _ = run(tmp_path, m, again, clock)
    assert summary.exit_code == ExitCode.OK
    assert again.starts == []


def test_a_server_wait_of_hours_ends_the_provider_for_this_run(tmp_path, clock):
    m = manifest(tmp_path, ["a", "b"], concurrency=1)
    cloudflare = TransientError("error code: 1015", status=429, retry_after=54749, overload=True)
    provider = ScriptedProvider(clock, script={"a": [cloudflare]})
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert len(provider.starts) == 1 and max(clock.sleeps, default=0) < 900
    assert "15.2 h" in next(r for r in ledger.pending() if r.id == "p0").error_message


def test_reference_images_are_read_from_disk_and_sent_inline(tmp_path, clock):
    ref = tmp_path / "ref.png"
    ref.write_bytes(png((1, 2, 3)))
    seen = []

    class Recording(ScriptedProvider):
        async def generate(self, request):
            seen.append(request.references)
            return await super().generate(request)

    digest = hashlib.sha256(ref.read_bytes()).hexdigest()
    base = manifest(tmp_path, ["a", "b"])
    items = tuple(replace(i, references=(ref,), reference_digests=(digest,))
                  for i in base.items)
    summary, _, _ = run(tmp_path, replace(base, items=items), Recording(clock), clock)
    assert summary.exit_code == ExitCode.OK
    assert [r[0].mime_type for r in seen] == ["image/png", "image/png"]
    assert seen[0][0].data == ref.read_bytes()


@pytest.mark.parametrize("damage", ["changed", "gone"])
def test_a_reference_that_changed_or_went_keeps_its_image_pending_and_the_rest_go_on(
        tmp_path, clock, damage):
    ref, other = tmp_path / "ref.png", tmp_path / "other.png"
    ref.write_bytes(png((1, 2, 3)))
    other.write_bytes(png((4, 5, 6)))
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (ref, other)]
    base = manifest(tmp_path, ["a", "b", "c"])
    items = (replace(base.items[0], references=(ref,), reference_digests=(digests[0],)),
             replace(base.items[1], references=(other,), reference_digests=(digests[1],)),
             base.items[2])
    if damage == "changed":
        ref.write_bytes(png((9, 9, 9)))
    else:
        ref.unlink()
    provider = ScriptedProvider(clock)
    summary, ledger, _ = run(tmp_path, replace(base, items=items), provider, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    rows = {r.id: r for r in ledger.rows()}
    assert rows[base.items[0].id].status == "pending"
    assert str(ref) in rows[base.items[0].id].error_message
    assert {rows[i.id].status for i in items[1:]} == {"done"}
    assert len(provider.starts) == 2  # nothing was sent for the image whose reference moved


class Charging(ScriptedProvider):
    """Reports what each image cost, as OpenRouter does in `usage.cost`."""

    async def generate(self, request):
        return GeneratedImage(png(), "image/png", request.model, {"cost": 0.021})


@pytest.mark.parametrize(("provider", "model", "cost"), [
    ("openrouter", "someone/new-model", 0.021),  # no list price: the reported charge counts
    ("openrouter", "google/gemini-3-pro-image-preview", 0.021),  # beats the list price
    ("simulator", "gemini-3-pro-image", 0.0),  # a provider that bills nothing costs nothing
])
def test_a_reported_charge_is_the_image_cost(tmp_path, clock, provider, model, cost):
    m = manifest(tmp_path, ["a"])
    m = replace(m, items=tuple(replace(i, provider=provider, model=model) for i in m.items))
    summary, ledger, _ = run(tmp_path, m, {provider: Charging(clock)}, clock)
    assert summary.exit_code == ExitCode.OK
    [row] = ledger.rows()
    assert row.cost_usd == pytest.approx(cost)
    assert ledger.cost_summary().on_disk_usd == pytest.approx(cost)
    assert ledger.cost_summary().spent.usd == pytest.approx(cost)  # the one request, paid
