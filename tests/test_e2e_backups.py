"""The backups end to end: the real CLI against the simulator on 127.0.0.1, with Stability
and OpenRouter as the only provider, and as the third link of a failover chain."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import pytest

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import env, ledger_rows, nbbatch_cmd, requests_log, write_manifest

pytestmark = pytest.mark.e2e

KEYS = {"GEMINI_API_KEY": "gemini-test-key", "OPENAI_API_KEY": "openai-test-key",
        "STABILITY_API_KEY": "sk-stability-test-key", "OPENROUTER_API_KEY": "sk-or-v1-test-key"}


def cli(tmp_path, *args, keys=KEYS):
    return subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, env={**env(tmp_path), **keys},
                          capture_output=True, text=True, timeout=120)


def status(tmp_path) -> dict:
    result = cli(tmp_path, "status", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def single(tmp_path, url, provider, model, prompts, **config):
    base = f"{url}/api/v1" if provider == "openrouter" else url
    return write_manifest(
        tmp_path / "m.yaml", prompts, base_url=url, concurrency=2,
        defaults={"provider": provider, "model": model, "aspect_ratio": "16:9"},
        providers={provider: {"base_url": base, "timeout": 10, **config}},
    )


def test_stability_run_against_the_simulate_command(tmp_path):
    server = subprocess.Popen(nbbatch_cmd("simulate", "--port", "0"), env=env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split("listening on ")[1].split()[0]
        prompts = ["a kite", {"prompt": "a boat", "model": "stable-image-ultra"},
                   {"prompt": "a tent", "model": "sd3.5-large-turbo", "aspect_ratio": "9:21"}]
        manifest = single(tmp_path, url, "stability", "stable-image-core", prompts,
                          style_preset="cinematic", output_format="jpeg")
        plan = cli(tmp_path, "plan", manifest)
        assert plan.returncode == 0 and "$0.15" in plan.stdout  # 0.03 + 0.08 + 0.04
        result = cli(tmp_path, "run", manifest)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
        server.stdout.close()
    assert result.returncode == 0, result.stderr
    doc = status(tmp_path)
    assert doc["counts"]["done"] == 3 and doc["cost_usd"] == pytest.approx(0.15)
    assert {i["model"] for i in doc["items"]} == {"stable-image-core", "stable-image-ultra",
                                                  "sd3.5-large-turbo"}
    assert sorted(p.suffix for p in (tmp_path / "out/images").iterdir()) == [".jpg"] * 3


def test_openrouter_run_against_the_simulate_command_records_the_cost_it_reports(tmp_path):
    server = subprocess.Popen(nbbatch_cmd("simulate", "--port", "0"), env=env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split("listening on ")[1].split()[0]
        prompts = ["a kite", {"prompt": "a boat", "model": "google/gemini-2.5-flash-image"}]
        manifest = single(tmp_path, url, "openrouter", "google/gemini-3-pro-image-preview",
                          prompts, title="nbbatch tests")
        result = cli(tmp_path, "run", manifest)
        log = requests_log(url)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
        server.stdout.close()
    assert result.returncode == 0, result.stderr
    assert [r["provider"] for r in log] == ["openrouter", "openrouter"]
    doc = status(tmp_path)
    assert doc["counts"]["done"] == 2 and doc["cost_usd"] == pytest.approx(0.134 + 0.039)
    usages = [json.loads(row["usage"]) for row in ledger_rows(tmp_path / "out")]
    assert sorted(u["cost"] for u in usages) == [0.039, 0.134]


def test_a_content_filtered_image_fails_as_blocked_and_is_never_saved(tmp_path):
    with SimulatorServer(SimulatorOptions()) as sim:
        manifest = single(tmp_path, sim.url, "stability", "stable-image-core",
                          [{"id": "ok", "prompt": "a kite"},
                           {"id": "blurred", "prompt": "a kite [filtered]"}])
        result = cli(tmp_path, "run", manifest)
        log = requests_log(sim.url)
    assert result.returncode == 3, result.stderr
    items = {i["id"]: i for i in status(tmp_path)["items"]}
    assert items["ok"]["status"] == "done"
    assert items["blurred"]["status"] == "failed" and items["blurred"]["file"] is None
    assert items["blurred"]["error"]["kind"] == "blocked"
    assert "CONTENT_FILTERED" in items["blurred"]["error"]["message"]
    assert [p.name for p in (tmp_path / "out/images").iterdir()] == ["ok.png"]
    assert sum(r["outcome"] == "blocked" for r in log) == 1  # not retried


def test_a_rejected_stability_key_stops_the_run_with_exit_4(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key="sk-the-right-key")) as sim:
        manifest = single(tmp_path, sim.url, "stability", "stable-image-core", ["a kite"])
        result = cli(tmp_path, "run", manifest)
    assert result.returncode == 4
    assert "STABILITY_API_KEY" in result.stdout + result.stderr


# third provider -> its settings, the price of one image, the ratio each image is made at
THIRD = {
    "stability": ({"base_url": "{url}", "model": "sd3.5-medium"}, 0.035, "4:5"),
    "openrouter": ({"base_url": "{url}/api/v1", "model": "google/gemini-3-pro-image-preview"},
                   0.134, "3:4"),
}


@pytest.mark.parametrize("third", list(THIRD))
def test_gemini_down_and_openai_out_of_quota_so_the_third_makes_every_image(tmp_path, third):
    config, price, made_at = THIRD[third]
    options = SimulatorOptions(outage=(0, 3600), outage_target="gemini", daily_quota=0,
                               quota_target="openai")
    with SimulatorServer(options) as sim:
        manifest = write_manifest(
            tmp_path / "m.yaml", [f"scene {i}" for i in range(8)], base_url=sim.url,
            concurrency=2,
            defaults={"provider": "gemini", "model": "gemini-3-pro-image",
                      "aspect_ratio": "3:4"},
            providers={
                "gemini": {"base_url": sim.url, "timeout": 10},
                "openai": {"base_url": f"{sim.url}/v1", "model": "gpt-image-1-mini",
                           "timeout": 10},
                third: {**config, "base_url": config["base_url"].format(url=sim.url),
                        "timeout": 10},
            },
            failover={"order": ["gemini", "openai", third], "trip_after": 3,
                      "probe_every": 300},
        )
        result = cli(tmp_path, "run", manifest)
        log = requests_log(sim.url)
    assert result.returncode == 0, result.stderr
    doc = status(tmp_path)
    assert {(i["provider"], i["model"], i["status"]) for i in doc["items"]} == {
        (third, config["model"], "done")}
    assert doc["counts"]["done"] == 8 and doc["cost_usd"] == pytest.approx(8 * price)
    outcomes = Counter((r["provider"], r["outcome"]) for r in log)
    assert outcomes[(third, "success")] == 8
    assert outcomes[("gemini", "overloaded")] <= 3  # trip_after; no probe due in the run
    assert 1 <= outcomes[("openai", "quota")] <= 2  # dropped at its first answer (2 in flight)
    assert "switched away" in result.stdout and "dropped (quota exhausted)" in result.stdout
    # Stability has no 3:4: each image records the ratio it was made at
    usages = [json.loads(row["usage"]) for row in ledger_rows(tmp_path / "out")]
    assert {(u.get("aspect_ratio", "3:4"), u.get("aspect_ratio_asked", "3:4"))
            for u in usages} == {(made_at, "3:4")}
