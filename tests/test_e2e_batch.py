"""Batch mode end to end: the CLI against the simulator's Gemini and OpenAI batch APIs over
real sockets, for both APIs. The CLI runs in this process (Typer's runner: the same code,
without a Python start-up per run), except where a run must be killed."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from nbbatch.cli import app
from nbbatch.engine.status import write_status_json
from nbbatch.sim import SimulatorOptions, SimulatorServer
from nbbatch.store import open_for_reading
from tests.e2e_helpers import KEY, configure, env, nbbatch_cmd, wait_until

pytestmark = pytest.mark.e2e

# api -> (provider, model, extra defaults, online price of one image from its usage report)
APIS = {
    "gemini": ("gemini", "gemini-3-pro-image", {}, 1120 * 120e-6),
    # 4K answers are too large to come back inline: the requests go up as a JSONL file.
    "gemini-file": ("gemini", "gemini-3-pro-image", {"image_size": "4K"}, 2000 * 120e-6),
    "openai": ("openai", "gpt-image-1", {}, 1056 * 40e-6),
}


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=5, batch_duration=0.3)) as server:
        yield server


@pytest.fixture(params=["gemini", "openai"])
def api(request):
    return request.param


def manifest(tmp_path: Path, sim, api: str, prompts: list, **extra) -> Path:
    provider, model, defaults, _ = APIS[api]
    doc = {
        "version": 1, "output": "out", "mode": "batch",
        "batch": {"poll_every": 0.05, **extra.pop("batch", {})},
        "defaults": {"provider": provider, "model": model, **defaults},
        "providers": {"gemini": {"base_url": sim.url, "timeout": 10},
                      "openai": {"base_url": f"{sim.url}/v1", "timeout": 10}},
        "retry": {"max_attempts": 4, "initial_delay": 0.02, "max_delay": 0.1},
        "prompts": [p if isinstance(p, dict) else {"id": f"img{i}", "prompt": p}
                    for i, p in enumerate(prompts)],
        **extra,
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_env(tmp_path: Path) -> dict:
    return {**env(tmp_path), "OPENAI_API_KEY": KEY}


class Result:
    def __init__(self, code: int, output: str) -> None:
        self.returncode, self.stdout, self.stderr = code, output, ""


def cli(tmp_path: Path, *args) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args], env=cli_env(tmp_path))
    return Result(result.exit_code, result.output)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def jobs(sim) -> list[dict]:
    return httpx.get(f"{sim.url}/_sim/batches", timeout=5).json()


def status(tmp_path: Path) -> dict:
    """`status --json`, in this process (the CLI's own is tested elsewhere; this saves a
    Python start-up per look)."""
    text = io.StringIO()
    with open_for_reading(tmp_path / "out") as ledger:
        write_status_json(ledger, text, out="out", manifest="m.yaml")
    return json.loads(text.getvalue())


def submitted_prompts(sim) -> list[str]:
    return [r["prompt"] for job in jobs(sim) for r in job["requests"]]


@pytest.mark.parametrize("api", ["gemini", "gemini-file", "openai"])
def test_a_batch_run_saves_what_the_api_returned_at_half_price(tmp_path, sim, api):
    path = manifest(tmp_path, sim, api, ["a red fox", "a blue whale", "a green frog",
                                         {"id": "bad", "prompt": "[blocked] a thing"}])
    result = cli(tmp_path, "run", path)
    assert result.returncode == 3, result.stdout + result.stderr  # done, one blocked
    (job,) = jobs(sim)
    returned = {r["key"].split("#")[0] for r in job["requests"] if r["outcome"] == "success"}
    doc = status(tmp_path)
    done = {i["id"] for i in doc["items"] if i["status"] == "done"}
    assert done == returned == {"img0", "img1", "img2"}
    files = {p.stem for p in (tmp_path / "out" / "images").iterdir()}
    assert files == done
    (bad,) = [i for i in doc["items"] if i["id"] == "bad"]
    assert bad["status"] == "failed" and bad["error"]["kind"] == "blocked"
    assert doc["cost_usd"] == pytest.approx(3 * APIS[api][3] / 2)  # half the online price
    assert all(i["batch"] is None for i in doc["items"])
    assert doc["batch_jobs"][0]["job"] == job["name"]
    assert doc["batch_jobs"][0]["phase"] == "closed"


def test_failed_and_expired_jobs_put_their_images_back_to_pending(tmp_path, sim, api):
    path = manifest(tmp_path, sim, api, [f"prompt {i}" for i in range(4)])
    configure(sim.url, batch_outcome="failed")
    failed = cli(tmp_path, "run", path)
    assert failed.returncode == 75, failed.stdout
    doc = status(tmp_path)
    assert doc["counts"]["pending"] == 4
    assert all(i["error"] and i["batch"] is None for i in doc["items"])
    configure(sim.url, batch_outcome="expired")
    expired = cli(tmp_path, "run", path)
    assert expired.returncode == 75, expired.stdout
    doc = status(tmp_path)
    assert doc["counts"]["done"] == 2  # an expired job ran half of its requests
    assert all(i["error"] for i in doc["items"] if i["status"] == "pending")
    configure(sim.url, batch_outcome="succeeded")
    last = cli(tmp_path, "run", path)
    assert last.returncode == 0, last.stdout
    assert [len(job["requests"]) for job in jobs(sim)] == [4, 4, 2]  # only what is missing


def test_no_wait_cancel_and_later_runs_that_collect(tmp_path, sim, api):
    configure(sim.url, batch_duration=4)
    path = manifest(tmp_path, sim, api, [f"prompt {i}" for i in range(8)])
    first = cli(tmp_path, "run", path, "--no-wait")
    assert first.returncode == 75, first.stdout
    assert "8 images wait in 1 live batch job" in first.stdout
    doc = status(tmp_path)
    (job,) = jobs(sim)
    assert {i["batch"]["job"] for i in doc["items"]} == {job["name"]}
    assert all(i["batch"]["submitted_at"].endswith("+00:00") for i in doc["items"])
    assert cli(tmp_path, "gallery", "out").returncode == 0  # pending images show their job
    assert job["name"] in (tmp_path / "out" / "gallery.html").read_text()
    assert wait_until(lambda: jobs(sim)[0]["finished_requests"] >= 2, timeout=10)
    cancelled = cli(tmp_path, "cancel", "out")
    assert cancelled.returncode == 0, cancelled.stdout
    assert "cancel requested" in cancelled.stdout
    configure(sim.url, batch_duration=0.2)
    collect = cli(tmp_path, "run", path, "--no-wait")  # what finished is kept; the rest goes
    assert collect.returncode == 75, collect.stdout  # back to pending and out in a new job
    first_job, second_job = jobs(sim)
    assert first_job["phase"] == "cancelled"
    assert status(tmp_path)["counts"]["done"] == first_job["finished_requests"] >= 2
    assert len(second_job["requests"]) == 8 - first_job["finished_requests"]
    assert wait_until(lambda: jobs(sim)[1]["phase"] == "succeeded", timeout=10)
    last = cli(tmp_path, "resume", "out")  # the ledger remembers: batch mode, --no-wait
    assert last.returncode == 0, last.stdout
    assert status(tmp_path)["counts"]["done"] == 8 and len(jobs(sim)) == 2
    online = [r for r in httpx.get(f"{sim.url}/_sim/requests").json() if "batch" not in r]
    assert online == []


def test_a_rejected_key_stops_a_batch_run_before_any_job(tmp_path, sim, api):
    path = manifest(tmp_path, sim, api, ["one"])
    result = CliRunner().invoke(app, ["run", str(path)], env={
        **cli_env(tmp_path), "GEMINI_API_KEY": "wrong", "OPENAI_API_KEY": "wrong"})
    assert result.exit_code == 4, result.output
    assert "pre-flight" in result.output and jobs(sim) == []


def test_kill_9_mid_create_then_the_next_run_finds_the_job(tmp_path, sim, api):
    configure(sim.url, latency=[30, 30])  # the create call's answer is slow to come
    path = manifest(tmp_path, sim, api, ["one", "two"])
    with open(tmp_path / "cli.log", "wb") as log:
        proc = subprocess.Popen(nbbatch_cmd("run", path), cwd=tmp_path, env=cli_env(tmp_path),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: len(jobs(sim)) == 1, timeout=20)
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(tmp_path / "out" / "ledger.db") as db:
        assert db.execute("SELECT phase, name FROM batch_jobs").fetchall() == [("creating", None)]
    configure(sim.url, latency=[0, 0])
    result = cli(tmp_path, "run", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "found in the job list" in result.stdout
    assert len(jobs(sim)) == 1 and sorted(submitted_prompts(sim)) == ["one", "two"]


def test_a_lost_create_answer_and_503s_make_one_job(tmp_path, sim, api):
    configure(sim.url, batch_create_503=2, batch_lose_create=1)
    path = manifest(tmp_path, sim, api, ["one", "two"])
    result = cli(tmp_path, "run", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "found in the job list" in result.stdout  # looked up, not sent again
    assert len(jobs(sim)) == 1 and sorted(submitted_prompts(sim)) == ["one", "two"]


def test_a_lost_create_answer_then_a_later_run_finds_the_job(tmp_path, sim, api):
    """The run that lost the answer stops (no retries left); the next run finds the job by
    its display name, collects it and sends nothing again."""
    configure(sim.url, batch_lose_create=1)
    path = manifest(tmp_path, sim, api, ["one", "two"], retry={"max_attempts": 1})
    first = cli(tmp_path, "run", path, "--no-wait")
    assert first.returncode == 75, first.stdout
    assert "the next run looks for it" in first.stdout and len(jobs(sim)) == 1
    assert wait_until(lambda: jobs(sim)[0]["phase"] == "succeeded", timeout=10)
    second = cli(tmp_path, "run", path)
    assert second.returncode == 0, second.stdout
    assert "found in the job list" in second.stdout
    assert len(jobs(sim)) == 1 and sorted(submitted_prompts(sim)) == ["one", "two"]
    assert status(tmp_path)["counts"]["done"] == 2
