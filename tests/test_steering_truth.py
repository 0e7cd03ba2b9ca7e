"""What the engine tells about providers, on virtual time: probes on schedule however many
images are queued, "retrying" for as long as a backoff lasts, no news after a drop, shape
changes made by a backup (or refused with failover.same_shape), budget stops in words."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from nbbatch import catalog
from nbbatch.engine.budget import Budget, BudgetGuard, StopKind
from nbbatch.engine.dispatcher import Dispatcher
from nbbatch.engine.events import EventKind, Level, ProviderState
from nbbatch.engine.failover import Choice, Router
from nbbatch.engine.planned import planned_images
from nbbatch.errors import ExitCode, QuotaExhaustedError
from nbbatch.model import FailoverConfig, PacingConfig
from nbbatch.store.files import ImageStore
from nbbatch.store.ledger import Ledger
from tests.test_failover import FlakyProvider, overloaded, run_two, two_provider_manifest
from tests.test_runner import ScriptedProvider, manifest, run

# -- probes -----------------------------------------------------------------------------------


def test_an_attempt_waiting_in_line_gives_way_to_a_probe_that_fell_due(clock):
    router = Router(["gemini", "openai"], trip_after=1, probe_every=10, clock=clock)
    router.overloaded(Choice("gemini"))  # switched away at t=1000
    queued = router.choose(("gemini", "openai"))
    assert queued == Choice("openai") and router.still_valid(queued, ("gemini", "openai"))
    clock.now += 10
    assert not router.still_valid(queued, ("gemini", "openai"))  # re-route: the probe is due
    assert router.choose(("gemini", "openai")) == Choice("gemini", probe=True)
    assert router.still_valid(queued, ("gemini", "openai"))  # one probe at a time


def test_a_short_batch_probes_on_schedule_and_the_primary_comes_back(tmp_path, clock):
    """16 images queued at once, an outage of 12 s, probe_every 10 s: every image was lined
    up for the backup before the probe fell due, yet the probe goes out and wins."""
    start = clock.now
    m = two_provider_manifest(tmp_path, 16, probe_every=10)
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: t < start + 12, latency=1)
    openai = ScriptedProvider(clock, latency=1)
    summary, ledger, events = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    later = [t - start for t, _ in gemini.starts if t - start > 5]
    assert later and later[0] <= 3 + 10 + 1  # tripped at about 3 s, probed 10 s later
    assert len(later) >= 3  # and, recovered, it served again
    made_by = {r.provider for r in ledger.rows()}
    assert made_by == {"gemini", "openai"}
    assert any("recovered" in e.message for e in events)


# -- provider states ----------------------------------------------------------------------------


def test_a_provider_shows_retrying_for_as_long_as_an_image_waits_out_its_backoff(tmp_path, clock):
    m = replace(manifest(tmp_path, ["flaky", "fine", "also fine"], concurrency=1, attempts=3,
                         interval=0),
                retry=replace(manifest(tmp_path, []).retry, initial_delay=10, max_delay=10))
    provider = ScriptedProvider(clock, latency=1, script={"flaky": [overloaded()]})
    seen = []
    out = tmp_path / "out"
    out.mkdir()
    store = ImageStore(out)
    store.prepare()
    ledger = Ledger.open(out / "ledger.db")
    ledger.sync(planned_images(m))
    dispatcher = Dispatcher(m, ledger, store, {"gemini": provider}, clock=clock, wall=clock,
                            sleep=clock.sleep,
                            on_event=lambda e, p: seen.append((e.kind, e.message,
                                                               dict(p.providers))))
    summary = asyncio.run(dispatcher.run(ledger.pending(), preflight=False))
    assert summary.exit_code == ExitCode.OK and summary.retries == 1
    # p1 succeeded meanwhile; when p2 starts, p0 still waits out its backoff
    p2_starts = next(states for kind, message, states in seen
                     if kind == EventKind.ATTEMPT and "request p2" in message)
    assert p2_starts["gemini"] == ProviderState.RETRYING
    assert seen[-1][2]["gemini"] == ProviderState.OK


def test_a_dropped_provider_is_told_once_and_never_again(tmp_path, clock):
    start = clock.now
    m = two_provider_manifest(tmp_path, 6)
    gemini = FlakyProvider(clock, QuotaExhaustedError("per day", status=429),
                           down=lambda t: t >= start + 1.5, latency=2)  # answers after that
    openai = ScriptedProvider(clock, latency=1)
    _, ledger, events = run_two(tmp_path, m, gemini, openai, clock)
    assert "gemini" in {r.provider for r in ledger.rows()}  # answers came after the drop
    told = [e.message for e in events if e.kind == EventKind.PROVIDER and e.provider == "gemini"
            and e.level >= Level.INFO]
    assert len(told) == 1 and told[0].startswith("gemini: dropped (quota exhausted)")


# -- shapes -------------------------------------------------------------------------------------


def test_the_catalog_knows_which_shapes_a_model_changes():
    assert catalog.shape_change("gpt-image-1", "16:9", "2K") == "makes 1536x1024 (3:2)"
    assert catalog.shape_change("gpt-image-1", "1:1", "1K") is None
    assert catalog.shape_change("gpt-image-1", "1:1", "2K") == "makes 1024x1024 (1:1)"
    assert catalog.shape_change("gpt-image-1", "3:2", None) is None
    assert catalog.shape_change("gemini-3-pro-image", "16:9", "4K") is None


def wide_items(m):
    return replace(m, items=tuple(replace(i, aspect_ratio="16:9", image_size="2K")
                                  for i in m.items))


def test_a_backup_that_changes_the_shape_says_so_and_records_it(tmp_path, clock):
    m = wide_items(two_provider_manifest(tmp_path, 3))
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: True, latency=1)
    summary, ledger, events = run_two(tmp_path, m, gemini, ScriptedProvider(clock), clock)
    assert summary.exit_code == ExitCode.OK
    notes = {r.shape_note for r in ledger.rows()}
    assert notes == {"asked 16:9 at 2K; openai (gpt-image-1) makes 1536x1024 (3:2)"}
    done = [e for e in events if e.kind == EventKind.DONE]
    assert all("shape changed: asked 16:9" in e.message for e in done) and len(done) == 3
    warned = [e.message for e in events if e.level == Level.WARNING and "shape" in e.message]
    assert warned == ["openai: shape changed: asked 16:9 at 2K; openai (gpt-image-1) makes "
                      "1536x1024 (3:2) (failover.same_shape: true keeps such items for gemini)"]
    assert {(r.width, r.height) for r in ledger.rows()} == {(8, 8)}  # what really came


def test_same_shape_keeps_such_items_for_the_primary(tmp_path, clock):
    m = wide_items(two_provider_manifest(tmp_path, 3))
    m = replace(m, failover=replace(m.failover, same_shape=True))
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: True, latency=1)
    openai = ScriptedProvider(clock)
    summary, ledger, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert openai.starts == []  # the backup would have changed every one of them
    assert summary.exit_code == ExitCode.TEMPFAIL and ledger.counts().pending == 3


def test_same_shape_still_lets_the_backup_make_what_it_makes_as_asked(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 3)
    m = replace(m, failover=FailoverConfig(("gemini", "openai"), same_shape=True),
                items=tuple(replace(i, aspect_ratio="1:1") for i in m.items),
                pacing=PacingConfig(m.pacing.interval, 2))
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: True, latency=1)
    summary, ledger, _ = run_two(tmp_path, m, gemini, ScriptedProvider(clock), clock)
    assert summary.exit_code == ExitCode.OK
    assert {r.provider for r in ledger.rows()} == {"openai"}
    assert {r.shape_note for r in ledger.rows()} == {None}


# -- budgets in words ---------------------------------------------------------------------------


def test_a_budget_not_reached_says_why_the_next_image_was_not_started(clock):
    guard = BudgetGuard(Budget(max_cost=0.30), clock=clock, started_at=clock.now)
    stop = guard.check(active=0, made=1, spent=0.202, reserved=0.0, next_cost=0.134)
    assert stop is not None and stop.kind == StopKind.MAX_COST
    assert stop.message == ("--max-cost: stopped before $0.30: the next image may cost up to "
                            "$0.134")
    reached = guard.check(active=1, made=1, spent=0.2, reserved=0.1, next_cost=0.134)
    assert reached is not None and reached.message == "--max-cost $0.30 reached"
    assert guard.check(active=0, made=1, spent=0.1, reserved=0.0, next_cost=0.134) is None


def test_run_summary_budget_helper_runs(tmp_path, clock):
    m = manifest(tmp_path, [f"p{i}" for i in range(4)], concurrency=1, interval=0.1)
    summary, _, _ = run(tmp_path, m, ScriptedProvider(clock, latency=1), clock,
                        Budget(max_cost=0.3))
    assert summary.stop is not None and summary.stop.message.startswith("--max-cost")
    assert summary.run_spend.billed_usd <= 0.3
