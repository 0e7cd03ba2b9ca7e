"""Failover end to end: the real CLI, Gemini and OpenAI both served by the simulator on
127.0.0.1, Gemini taken down or out of quota."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import (
    configure,
    env,
    nbbatch_cmd,
    requests_log,
    run_cli,
    status_json,
    wait_until,
    write_manifest,
)

pytestmark = pytest.mark.e2e

KEYS = {"GEMINI_API_KEY": "gemini-test-key", "OPENAI_API_KEY": "openai-test-key"}


def failover_manifest(tmp_path, url, n, *, probe_every=300, trip_after=3, **extra):
    return write_manifest(
        tmp_path / "m.yaml", [f"scene {i}" for i in range(n)], base_url=url, concurrency=2,
        providers={
            "gemini": {"base_url": url, "timeout": 10},
            "openai": {"base_url": f"{url}/v1", "model": "gpt-image-1-mini", "timeout": 10},
        },
        failover={"order": ["gemini", "openai"], "trip_after": trip_after,
                  "probe_every": probe_every},
        **extra,
    )


def run_both(tmp_path, *args):
    import subprocess

    from tests.e2e_helpers import nbbatch_cmd

    return subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, env={**env(tmp_path), **KEYS},
                          capture_output=True, text=True, timeout=120)


def by_provider(log):
    return Counter(r["provider"] for r in log)


def test_gemini_down_from_the_start_every_image_is_made_by_openai(tmp_path):
    options = SimulatorOptions(outage=(0, 3600), outage_target="gemini")
    with SimulatorServer(options) as sim:
        result = run_both(tmp_path, "run", failover_manifest(tmp_path, sim.url, 10))
        log = requests_log(sim.url)
    assert result.returncode == 0, result.stderr
    doc = status_json(tmp_path, tmp_path / "out")
    assert {(i["provider"], i["model"]) for i in doc["items"]} == {("openai", "gpt-image-1-mini")}
    assert doc["by_provider"]["openai"]["done"] == 10
    assert by_provider(log)["gemini"] <= 3  # trip_after, no probe due within the run
    assert "switched away" in result.stdout


def test_gemini_down_for_a_window_moves_to_openai_and_back(tmp_path):
    """Down until it has tripped, then for 1.5 s more: timed from the trip itself, so a slow
    start-up under load cannot use the window up before the run gets there."""
    options = SimulatorOptions(outage=(0, 1e9), outage_target="gemini", latency=(0.05, 0.05))
    with SimulatorServer(options) as sim:
        manifest = failover_manifest(tmp_path, sim.url, 60, probe_every=0.5, interval="0.05")
        run = subprocess.Popen(nbbatch_cmd("run", manifest), cwd=tmp_path,
                               env={**env(tmp_path), **KEYS}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

        def overloads():
            return [r["t"] for r in requests_log(sim.url)
                    if r["provider"] == "gemini" and r["outcome"] == "overloaded"]

        assert wait_until(lambda: len(overloads()) >= 3, timeout=60)
        tripped = overloads()[2]
        window_end = tripped + 1.5
        configure(sim.url, outage=[0, window_end])
        stdout, stderr = run.communicate(timeout=120)
        log = requests_log(sim.url)
    assert run.returncode == 0, stderr
    made_by = [i["provider"] for i in status_json(tmp_path, tmp_path / "out")["items"]]
    assert "openai" in made_by and made_by[-1] == "gemini"
    gemini_after_window = [r for r in log if r["provider"] == "gemini" and r["t"] >= window_end]
    assert gemini_after_window and all(r["outcome"] == "success" for r in gemini_after_window)
    # while down, Gemini saw the trip requests plus about one probe per probe_every
    gemini_in_window = [r for r in log if r["provider"] == "gemini" and r["t"] < window_end]
    assert len(gemini_in_window) <= 3 + 2 + (window_end - tripped) / 0.5 + 1
    assert "recovered" in stdout


def test_gemini_daily_quota_fails_over_instead_of_stopping(tmp_path):
    options = SimulatorOptions(daily_quota=2, quota_target="gemini")
    with SimulatorServer(options) as sim:
        result = run_both(tmp_path, "run", failover_manifest(tmp_path, sim.url, 6))
        log = requests_log(sim.url)
    assert result.returncode == 0, result.stderr
    counts = Counter(i["provider"] for i in status_json(tmp_path, tmp_path / "out")["items"])
    assert counts == {"gemini": 2, "openai": 4}
    # Dropped at its first quota answer: only a request already in flight may get another.
    assert 1 <= [r["outcome"] for r in log if r["provider"] == "gemini"].count("quota") <= 2


def test_both_providers_exhausted_exits_75_with_pending_kept(tmp_path):
    options = SimulatorOptions(daily_quota=1)  # one image per API, counted separately
    with SimulatorServer(options) as sim:
        result = run_both(tmp_path, "run", failover_manifest(tmp_path, sim.url, 5))
    assert result.returncode == 75, result.stderr
    assert status_json(tmp_path, tmp_path / "out")["counts"] == {
        "total": 5, "done": 2, "failed": 0, "pending": 3}


def test_max_cost_is_never_overshot(tmp_path):
    with SimulatorServer(SimulatorOptions()) as sim:
        manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(10)],
                                  base_url=sim.url, concurrency=3)
        result = run_cli(tmp_path, "run", manifest, "--max-cost", "0.5")
        assert len(requests_log(sim.url)) == 3
    assert result.returncode == 75, result.stderr
    doc = status_json(tmp_path, tmp_path / "out")
    assert doc["counts"]["done"] == 3 and doc["cost_usd"] <= 0.5  # 3 x $0.134
    assert doc["remaining_estimate_usd"] == pytest.approx(7 * 0.134)
