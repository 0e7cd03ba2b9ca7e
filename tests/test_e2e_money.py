"""Money as the user is told it, end to end against the simulator: OpenAI priced by quality,
--max-cost a hard cap at quality high and low, spent apart from what is on disk, interrupted
requests called what they were, and short test keys that mangle nothing."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import (
    configure,
    env,
    ledger_rows,
    nbbatch_cmd,
    requests_log,
    run_cli,
    start_cli,
    wait_until,
    write_manifest,
)

pytestmark = pytest.mark.e2e


def openai_run(tmp_path, *args):
    return subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, capture_output=True, text=True,
                          env={**env(tmp_path, None), "OPENAI_API_KEY": "sk-test-openai-0123"},
                          timeout=120)


def openai_manifest(tmp_path, url, quality, n=8):
    return write_manifest(
        tmp_path / f"{quality}.yaml", [f"a {quality} lamp {i}" for i in range(n)],
        base_url=url, concurrency=2, output=f"out-{quality}",
        defaults={"provider": "openai", "model": "gpt-image-1", "aspect_ratio": "1:1"},
        providers={"openai": {"api_key_env": "OPENAI_API_KEY", "base_url": f"{url}/v1",
                              "quality": quality, "timeout": 10}})


def money(text: str) -> float:
    return float(re.search(r"spent \$([\d.]+) this run", text).group(1))


def test_openai_is_priced_by_quality_and_max_cost_is_a_hard_cap_at_both(tmp_path):
    with SimulatorServer(SimulatorOptions()) as sim:
        high, low = (openai_manifest(tmp_path, sim.url, q) for q in ("high", "low"))
        plans = [openai_run(tmp_path, "plan", m, "--offline").stdout for m in (high, low)]
        assert re.search(r"estimated cost\s+\$1\.34", plans[0])  # 8 x $0.167
        assert re.search(r"estimated cost\s+\$0\.09", plans[1])  # 8 x $0.011

        nothing = openai_run(tmp_path, "run", high, "--max-cost", "0.10")
        assert nothing.returncode == 75, nothing.stderr
        assert "stopped: --max-cost: stopped before $0.10: the next image may cost up to " \
               "$0.167" in nothing.stdout
        assert "the 8 pending will cost about $1.336" in nothing.stdout
        assert requests_log(sim.url) == []  # not one image could fit: none was started

        some = openai_run(tmp_path, "run", high, "--max-cost", "0.40")
        assert some.returncode == 75, some.stderr
        assert money(some.stdout) <= 0.40
        assert [r["status"] for r in ledger_rows(tmp_path / "out-high")].count("done") == 2

        cheap = openai_run(tmp_path, "run", low, "--max-cost", "0.05")
        assert cheap.returncode == 75, cheap.stderr
        assert money(cheap.stdout) <= 0.05
        made = [r["status"] for r in ledger_rows(tmp_path / "out-low")].count("done")
        assert 3 <= made <= 4  # $0.011 each at low quality: more images for less


def test_spent_counts_images_made_again_apart_from_those_on_disk(tmp_path):
    with SimulatorServer(SimulatorOptions()) as sim:
        path = write_manifest(tmp_path / "m.yaml", ["a lamp", "a chair", "a table"],
                              base_url=sim.url)
        assert run_cli(tmp_path, "run", path).returncode == 0
        write_manifest(tmp_path / "m.yaml", ["a lamp", "a green chair", "a table"],
                       base_url=sim.url)
        again = run_cli(tmp_path, "run", path)
        status = run_cli(tmp_path, "status", "out", "--summary")
    each = 1120 * 120e-6  # the image tokens the simulator reports, at Gemini's token price
    assert again.returncode == 0, again.stderr
    assert (f"spent ${each:.3f} this run (${4 * each:.3f} in all runs; images on disk: "
            f"${3 * each:.3f})") in again.stdout
    assert (f"spent ${4 * each:.3f} in all runs; the 3 images on disk cost ${3 * each:.3f}"
            in status.stdout)


def test_interrupted_requests_are_called_so_and_told_once(tmp_path):
    with SimulatorServer(SimulatorOptions(latency=(5, 5))) as sim:
        path = write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(4)],
                              base_url=sim.url, concurrency=2, interval="0")
        run = start_cli(tmp_path, "run", path)
        try:
            assert wait_until(lambda: len(requests_log(sim.url)) >= 2)
        finally:
            run.send_signal(signal.SIGINT)
            assert run.wait(30) == 130
        log = (tmp_path / "cli.log").read_text()
        assert "requests that timed out" not in log
        assert re.search(r"of which up to \$0\.\d+ possibly billed: 2 interrupted", log), log
        assert "interrupted: nothing is lost; to continue: nbbatch resume out" in log
        configure(sim.url, latency=[0, 0])
        resumed = run_cli(tmp_path, "resume", "out")
        status = run_cli(tmp_path, "status", "out", "--summary")
    assert resumed.returncode == 0, resumed.stderr
    assert "possibly billed" not in resumed.stdout  # this run had none: not told again
    assert "possibly billed: 2 interrupted" in status.stdout  # the folder's figures keep it


def test_a_short_test_key_mangles_no_message(tmp_path):
    with SimulatorServer(SimulatorOptions(daily_quota=0)) as sim:
        path = write_manifest(tmp_path / "m.yaml", ["p"], base_url=sim.url)
        result = run_cli(tmp_path, "run", path, key="x")  # the README's GEMINI_API_KEY=x
    assert result.returncode == 75, result.stderr
    assert "You exceeded your current quota" in result.stdout + result.stderr
    assert "You exceeded your current quota" in ledger_rows(tmp_path / "out")[0]["error_message"]
