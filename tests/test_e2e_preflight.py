"""Pre-flight end to end: the real CLI against `nbbatch simulate`'s metadata routes."""

from __future__ import annotations

import subprocess

import pytest

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import (
    KEY,
    env,
    metadata_log,
    nbbatch_cmd,
    requests_log,
    run_cli,
    write_manifest,
)
from tests.test_e2e_failover import failover_manifest

pytestmark = pytest.mark.e2e


def run_keys(tmp_path, *args, gemini=KEY, openai=KEY):
    keys = {"GEMINI_API_KEY": gemini, "OPENAI_API_KEY": openai}
    return subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, env={**env(tmp_path), **keys},
                          capture_output=True, text=True, timeout=60)


def test_a_backup_with_a_bad_key_is_a_warning_at_start_and_is_dropped(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key=KEY)) as sim:
        manifest = failover_manifest(tmp_path, sim.url, 4)
        result = run_keys(tmp_path, "run", manifest, openai="sk-wrong-0123456789abcdef")
        log, checks = requests_log(sim.url), metadata_log(sim.url)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "openai: dropped (rejected)" in result.stdout
    assert result.stdout.index("dropped") < result.stdout.index("done ")  # at the start
    assert {r["provider"] for r in log} == {"gemini"}
    assert {(c["provider"], c["status"]) for c in checks} == {("gemini", 200), ("openai", 401)}
    assert "0123456789abcdef" not in result.stdout + result.stderr


def test_an_unknown_model_on_an_item_stops_before_any_generation_request(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key=KEY)) as sim:
        manifest = write_manifest(
            tmp_path / "m.yaml",
            ["fine", {"id": "typo", "prompt": "x", "model": "gemini-3-pro-imagee"}],
            base_url=sim.url)
        result = run_cli(tmp_path, "run", manifest)
        planned = run_cli(tmp_path, "plan", manifest)
        offline = run_cli(tmp_path, "plan", manifest, "--offline")
        log = requests_log(sim.url)
    assert result.returncode == 2, result.stderr
    assert "gemini-3-pro-imagee" in result.stderr and "used by typo" in result.stderr
    assert log == []
    assert planned.returncode == 2 and "gemini-3-pro-imagee" in planned.stderr
    assert "pre-flight: gemini gemini-3-pro-image: ok" in planned.stdout
    assert offline.returncode == 0 and "pre-flight" not in offline.stdout


def test_a_gateway_without_the_metadata_route_falls_back_to_a_first_request_alone(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key=KEY, metadata=False,
                                          latency=(0.3, 0.3))) as sim:
        manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(4)],
                                  base_url=sim.url, interval="0.01", concurrency=4)
        result = run_cli(tmp_path, "run", manifest)
        log, checks = requests_log(sim.url), metadata_log(sim.url)
    assert result.returncode == 0, result.stderr
    assert [c["status"] for c in checks] == [404]
    starts = sorted(r["t"] for r in log)
    assert starts[1] - starts[0] >= 0.25  # the second waited for the first answer
    assert starts[3] - starts[1] < 0.25  # then the lane opened up


def test_a_checked_provider_opens_up_from_its_first_request(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key=KEY, latency=(0.3, 0.3))) as sim:
        manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(4)],
                                  base_url=sim.url, interval="0.01", concurrency=4)
        result = run_cli(tmp_path, "run", manifest)
        log = requests_log(sim.url)
    assert result.returncode == 0, result.stderr
    starts = sorted(r["t"] for r in log)
    assert starts[3] - starts[0] < 0.25  # no first request alone
