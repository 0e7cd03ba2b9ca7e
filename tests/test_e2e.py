"""End to end: the real CLI in a subprocess against the simulator over real sockets."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import (
    KEY,
    configure,
    env,
    metadata_log,
    nbbatch_cmd,
    requests_log,
    run_cli,
    start_cli,
    status_json,
    wait_until,
    write_manifest,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=7)) as server:
        yield server


def successes(log) -> Counter:
    return Counter(r["prompt"] for r in log if r["outcome"] == "success")


def test_a_run_makes_every_image_and_status_reports_it(tmp_path, sim):
    manifest = write_manifest(tmp_path / "m.yaml", ["a red fox", "a blue whale",
                              {"id": "trio", "prompt": "three pears", "count": 3}],
                              base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 0, result.stderr
    images = sorted(p.name for p in (tmp_path / "out/images").iterdir())
    assert images == ["img0.jpg", "img1.jpg", "trio-1.jpg", "trio-2.jpg", "trio-3.jpg"]
    for name in images:
        Image.open(tmp_path / "out/images" / name).verify()
    doc = status_json(tmp_path, tmp_path / "out")
    assert doc["counts"] == {"total": 5, "done": 5, "failed": 0, "pending": 0}
    assert doc["manifest"] == "m.yaml" and doc["out"] == "out"
    item = doc["items"][0]
    assert set(item) >= {"id", "index", "status", "provider", "model", "attempts", "file",
                         "sha256", "error"}
    assert item["file"] == "images/img0.jpg" and item["provider"] == "gemini"
    assert doc["cost_usd"] == pytest.approx(5 * 1120 * 120e-6)  # image tokens x price
    assert sum(successes(requests_log(sim.url)).values()) == 5


def test_retries_wait_at_least_the_server_delay_for_the_whole_provider(tmp_path, sim):
    configure(sim.url, rate_limited=0.5, retry_delay=0.4)
    # One request in flight at a time: each answer is known before the next request goes,
    # so the server's clock can tell whether the pause held (with more in flight, a request
    # sent before the 429 arrived is fair, and indistinguishable here).
    manifest = write_manifest(tmp_path / "m.yaml", [f"prompt {i}" for i in range(5)],
                              base_url=sim.url, max_attempts=20, concurrency=1)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 0, result.stderr
    log = requests_log(sim.url)
    limited = [r["t"] for r in log if r["outcome"] == "rate_limited"]
    assert limited, "the seed should produce some 429s"
    assert len({r["prompt"] for r in log}) == 5
    for t in limited:
        # No request on the provider, for any image, may start within the delay asked for.
        assert not [r for r in log if t < r["t"] < t + 0.4 - 0.02]


def test_daily_quota_stops_cleanly_then_a_later_run_completes(tmp_path, sim):
    configure(sim.url, daily_quota=2)
    manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(5)],
                              base_url=sim.url, concurrency=1)
    first = run_cli(tmp_path, "run", manifest)
    assert first.returncode == 75, first.stderr
    assert "quota" in (first.stdout + first.stderr)
    assert status_json(tmp_path, tmp_path / "out")["counts"]["pending"] == 3
    quota_answers = [r for r in requests_log(sim.url) if r["outcome"] == "quota"]
    assert len(quota_answers) == 1  # the per-day 429 is not retried

    configure(sim.url, daily_quota=None)
    second = run_cli(tmp_path, "run", manifest)
    assert second.returncode == 0, second.stderr
    assert status_json(tmp_path, tmp_path / "out")["counts"]["done"] == 5
    assert set(successes(requests_log(sim.url)).values()) == {1}


def test_a_changed_prompt_alone_is_generated_again(tmp_path, sim):
    prompts = ["a lamp", "a chair", "a table"]
    manifest = write_manifest(tmp_path / "m.yaml", prompts, base_url=sim.url)
    assert run_cli(tmp_path, "run", manifest).returncode == 0
    before = len(requests_log(sim.url))
    write_manifest(tmp_path / "m.yaml", ["a lamp", "a green chair", "a table"], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 0, result.stderr
    assert [r["prompt"] for r in requests_log(sim.url)[before:]] == ["a green chair"]


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, sim):
    configure(sim.url, latency=[1.0, 1.0])
    manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(8)],
                              base_url=sim.url, concurrency=1)
    first = start_cli(tmp_path, "run", manifest)
    try:
        assert wait_until(lambda: len(requests_log(sim.url)) >= 1)
        second = run_cli(tmp_path, "run", manifest, timeout=10)
        assert second.returncode == 75
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(10)


def test_a_wrong_key_aborts_before_any_generation_request_and_is_never_printed(tmp_path, sim):
    wrong = "AIzaWRONG-key-4c0ffee"
    manifest = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(6)], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest, key=wrong)
    assert result.returncode == 4, result.stderr
    assert "key" in result.stderr.lower() and "GEMINI_API_KEY" in result.stderr
    assert "pre-flight" in result.stderr
    assert requests_log(sim.url) == []  # the free metadata request said no: nothing was paid
    assert len(metadata_log(sim.url)) == 1
    for text in (result.stdout, result.stderr, status_json(tmp_path, tmp_path / "out").__repr__()):
        assert wrong not in text
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes()


def test_a_missing_key_sends_nothing_and_says_what_to_set(tmp_path, sim):
    manifest = write_manifest(tmp_path / "m.yaml", ["p"], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest, key=None)
    assert result.returncode == 2
    assert "GEMINI_API_KEY" in result.stderr and "--provider simulator" in result.stderr
    assert requests_log(sim.url) == []


def test_a_bad_manifest_exits_2_and_sends_nothing(tmp_path, sim):
    manifest = write_manifest(tmp_path / "m.yaml", ["ok"], base_url=sim.url)
    manifest.write_text(manifest.read_text().replace("aspect_ratio", "aspect_ration"))
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 2
    assert "m.yaml" in result.stderr and "aspect_ration" in result.stderr
    assert requests_log(sim.url) == []


def test_blocked_prompts_fail_and_the_run_exits_3(tmp_path, sim):
    manifest = write_manifest(tmp_path / "m.yaml", ["fine", "nope [blocked]"], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 3, result.stderr
    doc = status_json(tmp_path, tmp_path / "out")
    failed = [i for i in doc["items"] if i["status"] == "failed"]
    assert failed[0]["error"]["kind"] == "blocked" and failed[0]["file"] is None


def test_the_simulate_command_serves_a_real_run(tmp_path):
    server = subprocess.Popen(nbbatch_cmd("simulate", "--port", "0"), env=env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        manifest = write_manifest(tmp_path / "m.yaml", ["a kite", "a boat"], base_url=url)
        result = run_cli(tmp_path, "run", manifest)
        assert result.returncode == 0, result.stderr
        assert len(list((tmp_path / "out/images").iterdir())) == 2
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
        server.stdout.close()


def test_the_readme_quick_start_runs_offline(tmp_path):
    sample = Path(__file__).parent.parent / "samples" / "prompts.yaml"
    result = run_cli(tmp_path, "run", sample, "--provider", "simulator", "--interval", "0.05",
                     "--out", tmp_path / "quick", key=None)
    assert result.returncode == 0, result.stderr
    doc = json.loads(run_cli(tmp_path, "status", tmp_path / "quick", "--json").stdout)
    assert doc["counts"]["done"] == doc["counts"]["total"] == 6
    assert {i["provider"] for i in doc["items"]} == {"simulator"}
