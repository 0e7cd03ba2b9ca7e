"""Failover: the router alone, then the runner with two scripted providers."""


from dataclasses import replace

import pytest

from nbbatch.engine.failover import Choice, NoProviderLeft, Router, candidates
from nbbatch.errors import ExitCode, FatalError, QuotaExhaustedError, TransientError
from nbbatch.model import (
    FailoverConfig,
    Interval,
    Item,
    Manifest,
    PacingConfig,
    ProviderConfig,
    RetryConfig,
)
from tests.test_runner import ScriptedProvider, run


def test_candidates_put_the_items_provider_first():
    failover = FailoverConfig(order=("gemini", "openai"))
    item = Item(id="a", prompt="p", provider="openai", model="gpt-image-1")
    assert candidates(item, failover) == ("openai", "gemini")
    assert candidates(item, None) == ("openai",)


def test_routes_worked_out_per_shape_are_each_items_candidates(tmp_path):
    from nbbatch.engine.failover import routes_of
    from nbbatch.engine.shapes import Shapes

    failover = FailoverConfig(order=("gemini", "openai"), same_shape=True)
    shapes = [("16:9", "2K"), ("3:2", None), ("16:9", "2K"), ("1:1", None), ("3:2", None)]
    items = tuple(Item(id=f"i{n}", prompt="p", provider="gemini", model="gemini-3-pro-image",
                       aspect_ratio=ratio, image_size=size)
                  for n, (ratio, size) in enumerate(shapes))
    items += (Item(id="o", prompt="p", provider="openai", model="gpt-image-1"),)
    m = Manifest(path=tmp_path / "m.yaml", output=None, providers={},
                 pacing=PacingConfig(Interval(1, 1), 1), retry=RetryConfig(),
                 failover=failover, items=items)
    routes = routes_of(items, failover, Shapes(m))
    assert routes == {item.id: candidates(item, failover, Shapes(m)) for item in items}
    assert routes["i0"] == ("gemini",) and routes["i1"] == ("gemini", "openai")


def test_trips_after_consecutive_overloads_and_probes_on_schedule(clock):
    router = Router(["gemini", "openai"], trip_after=3, probe_every=300, clock=clock)
    both = ("gemini", "openai")
    for _ in range(2):
        assert not router.overloaded(router.choose(both))
    assert router.overloaded(router.choose(both))  # third in a row: switched away
    assert router.choose(both) == Choice("openai")
    clock.now += 299
    assert router.choose(both) == Choice("openai")
    clock.now += 1
    probe = router.choose(both)
    assert probe == Choice("gemini", probe=True)
    assert router.choose(both) == Choice("openai")  # one probe at a time
    router.overloaded(probe)  # still down: next probe 300 s later
    clock.now += 299
    assert router.choose(both) == Choice("openai")
    clock.now += 1
    probe = router.choose(both)
    assert probe.probe and router.succeeded(probe)  # recovered
    assert router.choose(both) == Choice("gemini")


def test_a_success_resets_the_overload_count(clock):
    router = Router(["gemini", "openai"], trip_after=3, probe_every=300, clock=clock)
    for _ in range(2):
        router.overloaded(Choice("gemini"))
    router.succeeded(Choice("gemini"))
    for _ in range(2):
        assert not router.overloaded(Choice("gemini"))


def test_no_switching_without_failover_or_without_a_backup(clock):
    single = Router(["gemini"], trip_after=3, probe_every=300, clock=clock)
    assert not any(single.overloaded(Choice("gemini")) for _ in range(10))
    disabled = Router(["gemini", "openai"], trip_after=0, probe_every=0, clock=clock)
    assert not any(disabled.overloaded(Choice("gemini")) for _ in range(10))


def test_dropped_providers_are_skipped_until_none_is_left(clock):
    router = Router(["gemini", "openai"], trip_after=3, probe_every=300, clock=clock)
    assert router.drop("gemini", "quota")
    assert router.choose(("gemini", "openai")) == Choice("openai")
    router.drop("openai", "key rejected")
    with pytest.raises(NoProviderLeft):
        router.choose(("gemini", "openai"))


# -- the runner with two providers ------------------------------------------------------


def two_provider_manifest(tmp_path, n, *, trip_after=3, probe_every=300):
    items = tuple(Item(id=f"p{i}", prompt=f"p{i}", provider="gemini",
                       model="gemini-3-pro-image") for i in range(n))
    return Manifest(
        path=tmp_path / "m.yaml", output=tmp_path / "out",
        providers={"openai": ProviderConfig(name="openai", model="gpt-image-1")},
        pacing=PacingConfig(Interval(1, 1), 2),
        retry=RetryConfig(max_attempts=6, initial_delay=1, max_delay=2),
        failover=FailoverConfig(order=("gemini", "openai"), trip_after=trip_after,
                                probe_every=probe_every),
        items=items,
    )


class FlakyProvider(ScriptedProvider):
    """Raises `error` for every request while `down(now)` is true."""

    def __init__(self, clock, error, down, **kw):
        super().__init__(clock, **kw)
        self.error, self.down = error, down

    async def generate(self, request):
        if self.down(self.clock.now):
            self.starts.append((self.clock.now, request.prompt))
            await self.clock.sleep(self.latency)
            raise self.error
        return await super().generate(request)


def run_two(tmp_path, m, gemini, openai, clock):
    return run(tmp_path, m, {"gemini": gemini, "openai": openai}, clock)


def overloaded():
    return TransientError("The model is overloaded.", status=503, overload=True)


def test_primary_down_from_the_start_moves_every_image_to_the_backup(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 8)
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: True, latency=1)
    openai = ScriptedProvider(clock, latency=1)
    summary, ledger, events = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    rows = list(ledger.rows())
    assert {(r.provider, r.model) for r in rows} == {("openai", "gpt-image-1")}
    assert len(gemini.starts) <= 3 + 1  # trip_after, plus at most one probe
    assert any("switched away" in e.message for e in events)


def test_primary_recovers_and_takes_its_place_again(tmp_path, clock):
    start = clock.now
    m = two_provider_manifest(tmp_path, 80, probe_every=20)
    gemini = FlakyProvider(clock, overloaded(), down=lambda t: t < start + 30, latency=1)
    openai = ScriptedProvider(clock, latency=1)
    summary, ledger, events = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    by_provider = {r.id: r.provider for r in ledger.rows()}
    assert "openai" in by_provider.values() and "gemini" in by_provider.values()
    assert any("recovered" in e.message for e in events)
    # after recovery the primary serves the rest
    last = [r.provider for r in sorted(ledger.rows(), key=lambda r: r.position)][-5:]
    assert set(last) == {"gemini"}


def test_primary_daily_quota_fails_over_instead_of_stopping(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 6)
    gemini = FlakyProvider(clock, QuotaExhaustedError("per day", status=429),
                           down=lambda t: True)
    openai = ScriptedProvider(clock)
    summary, ledger, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    assert len(gemini.starts) == 1  # dropped after its first quota answer
    assert ledger.counts().done == 6


def test_both_quotas_exhausted_stops_with_75_and_pending_kept(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 6)
    gemini = FlakyProvider(clock, QuotaExhaustedError("per day"), down=lambda t: True)
    openai = FlakyProvider(clock, QuotaExhaustedError("insufficient_quota"), down=lambda t: True)
    summary, ledger, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert ledger.counts().pending == 6
    assert len(gemini.starts) == 1 and len(openai.starts) == 1


def test_a_rejected_backup_key_does_not_stop_a_healthy_primary(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 4)
    gemini = ScriptedProvider(clock)
    openai = FlakyProvider(clock, FatalError("bad key"), down=lambda t: True)
    summary, _, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    assert openai.starts == []


def test_both_keys_rejected_exits_4(tmp_path, clock):
    m = two_provider_manifest(tmp_path, 4)
    gemini = FlakyProvider(clock, FatalError("bad key"), down=lambda t: True)
    openai = FlakyProvider(clock, FatalError("bad key"), down=lambda t: True)
    summary, ledger, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.AUTH
    assert len(gemini.starts) == 1 and len(openai.starts) == 1
    assert ledger.counts().pending == 4


def test_discovering_an_outage_costs_trip_after_plus_what_was_in_flight(tmp_path, clock):
    """Concurrency 8, latency 5x the interval, the primary down from the start: after its
    first overload answer it sends one request at a time, so it trips on the answers of the
    requests already in flight instead of sending a new one for each slot an answer frees."""
    class CheckedFlaky(FlakyProvider):
        async def check(self, model):  # the pre-flight passed: full concurrency at once
            return None

    m = replace(two_provider_manifest(tmp_path, 30, trip_after=3),
                pacing=PacingConfig(Interval(1, 1), 8))
    gemini = CheckedFlaky(clock, overloaded(), down=lambda t: True, latency=5)
    openai = ScriptedProvider(clock, latency=5)
    summary, _, _ = run_two(tmp_path, m, gemini, openai, clock)
    assert summary.exit_code == ExitCode.OK
    first_answer = gemini.starts[0][0] + 5
    in_flight_then = sum(1 for t, _ in gemini.starts if t < first_answer)
    before_the_trip = [t for t, _ in gemini.starts if t < first_answer + 2]
    assert in_flight_then == 5
    assert len(before_the_trip) <= max(3, in_flight_then)
    assert len(gemini.starts) <= in_flight_then + 1  # + at most one probe after the switch
