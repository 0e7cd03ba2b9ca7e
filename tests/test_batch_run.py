"""The batch run on virtual time, against a fake batch API: waiting and polling with backoff,
per-request outcomes, budgets at submission, --max-duration, signals, never two live jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

import pytest
import yaml

from nbbatch.engine.batch_run import BatchRun
from nbbatch.engine.budget import Budget, StopKind
from nbbatch.engine.planned import planned_images
from nbbatch.errors import (
    BlockedError,
    ExitCode,
    InvalidRequestError,
    QuotaExhaustedError,
    TransientError,
)
from nbbatch.manifest import load_manifest
from nbbatch.providers.base import (
    BatchClient,
    BatchItem,
    BatchResult,
    BatchStatus,
    GeneratedImage,
    JobPhase,
)
from nbbatch.sim.images import draw_image
from nbbatch.store.files import ImageStore
from nbbatch.store.ledger import Ledger

JPEG = draw_image("x", aspect_ratio="1:1", mime_type="image/jpeg", scale=16)


class FakeBatchAPI(BatchClient):
    """Jobs that finish `duration` seconds (virtual) after creation; the prompt picks each
    request's answer: "[blocked]", "[invalid]", "[flaky]", "[quota]", else an image."""

    name = "gemini"

    def __init__(self, clock, *, duration: float = 30.0, poll_failures: int = 0) -> None:
        self.clock, self.duration, self.poll_failures = clock, duration, poll_failures
        self.jobs: dict[str, dict] = {}
        self.polls = 0

    async def prepare(self, display_name, model, items: Iterable[BatchItem]):
        return None

    async def create(self, display_name, model, items, input_file):
        name = f"batches/{len(self.jobs) + 1}"
        self.jobs[name] = {"created": self.clock(), "display": display_name,
                           "requests": [(i.key, i.request.prompt) for i in items]}
        return BatchStatus(name, display_name, "BATCH_STATE_PENDING", JobPhase.PENDING)

    async def get(self, name):
        self.polls += 1
        if self.poll_failures:
            self.poll_failures -= 1
            raise TransientError("The service is currently unavailable.", overload=True)
        job = self.jobs[name]
        done = self.clock() >= job["created"] + self.duration
        return BatchStatus(name, job["display"],
                           "BATCH_STATE_SUCCEEDED" if done else "BATCH_STATE_RUNNING",
                           JobPhase.SUCCEEDED if done else JobPhase.RUNNING,
                           total=len(job["requests"]), results=name)

    async def find(self, display_name):
        return next((await self.get(n) for n, j in self.jobs.items()
                     if j["display"] == display_name), None)

    async def cancel(self, name):
        return None

    async def results(self, status) -> AsyncIterator[BatchResult]:
        for key, prompt in self.jobs[status.name]["requests"]:
            yield key, _answer(prompt)


def _answer(prompt: str):
    for word, error in (("[blocked]", BlockedError), ("[invalid]", InvalidRequestError),
                        ("[flaky]", TransientError), ("[quota]", QuotaExhaustedError)):
        if word in prompt:
            return error(f"{word} answer")
    return GeneratedImage(JPEG, "image/jpeg", "gemini-3-pro-image")


@pytest.fixture
def folder(tmp_path):
    def make(prompts, **batch):
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump({
            "mode": "batch", "batch": {"poll_every": 10, **batch},
            "defaults": {"provider": "gemini", "model": "gemini-3-pro-image"},
            "retry": {"max_attempts": 4, "initial_delay": 1, "max_delay": 4},
            "prompts": [{"id": f"p{i}", "prompt": p} for i, p in enumerate(prompts)]}))
        manifest = load_manifest(path)
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        store = ImageStore(out)
        store.prepare()
        ledger = Ledger.open(out / "ledger.db")
        ledger.sync(planned_images(manifest))
        return manifest, ledger, store
    return make


def run(manifest, ledger, store, api, clock, **kw):
    batch = BatchRun(manifest, ledger, store, {"gemini": api}, out_name="out",
                     clock=clock, sleep=clock.sleep, **kw)
    return batch, asyncio.run(batch.run())


def test_waits_polling_with_backoff_and_classifies_each_answer(folder, clock):
    manifest, ledger, store = folder(["a fox", "[blocked] b", "[invalid] c", "[flaky] d",
                                      "[quota] e"])
    api = FakeBatchAPI(clock, duration=30, poll_failures=2)
    _, summary = run(manifest, ledger, store, api, clock)
    states = {row.id: (row.status, row.error_kind) for row in ledger.rows()}
    assert states == {"p0": ("done", None), "p1": ("failed", "blocked"),
                      "p2": ("failed", "invalid"), "p3": ("pending", "transient"),
                      "p4": ("pending", "quota")}
    assert summary.exit_code == ExitCode.TEMPFAIL and summary.jobs_open == 0
    assert 10 in clock.sleeps and len([s for s in clock.sleeps if s < 10]) >= 2  # backoff
    assert ledger.cost_summary().on_disk_usd == pytest.approx(0.134 / 2)  # the batch price
    assert ledger.cost_summary().spent.usd == pytest.approx(0.134 / 2)
    assert (store.images / "p0.jpg").read_bytes() == JPEG


def test_max_duration_bounds_the_wait_and_leaves_the_job_live(folder, clock):
    manifest, ledger, store = folder(["a", "b"])
    api = FakeBatchAPI(clock, duration=1000)
    start = clock()
    _, summary = run(manifest, ledger, store, api, clock, budget=Budget(max_duration=35))
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert summary.stop.kind == StopKind.MAX_DURATION and clock() - start == pytest.approx(35)
    (job,) = ledger.batch.jobs()
    assert job.phase == "live" and ledger.batch.in_open_jobs() == 2


def test_a_signal_while_waiting_exits_and_leaves_the_job_live(folder, clock):
    manifest, ledger, store = folder(["a"])
    api = FakeBatchAPI(clock, duration=1000)
    batch = BatchRun(manifest, ledger, store, {"gemini": api}, out_name="out", clock=clock,
                     sleep=clock.sleep)

    async def main():
        async def signal_later():
            await clock.sleep(25)
            batch.interrupt(ExitCode.SIGTERM)
        later = asyncio.ensure_future(signal_later())
        summary = await batch.run()
        await later
        return summary

    summary = asyncio.run(main())
    assert summary.exit_code == ExitCode.SIGTERM and summary.jobs_open == 1
    assert ledger.batch.jobs()[0].phase == "live"


def test_budgets_count_images_at_submission_at_the_batch_price(folder, clock):
    manifest, ledger, store = folder([f"p{i}" for i in range(5)])
    api = FakeBatchAPI(clock)
    _, summary = run(manifest, ledger, store, api, clock, budget=Budget(max_cost=0.2),
                     no_wait=True)
    (job,) = api.jobs.values()
    assert len(job["requests"]) == 2  # $0.067 each at the batch price: a third passes $0.20
    assert summary.stop.kind == StopKind.NO_WAIT and summary.submitted == 2
    _, summary = run(manifest, ledger, store, api, clock, budget=Budget(max_images=1),
                     no_wait=True)
    assert [len(j["requests"]) for j in api.jobs.values()] == [2, 1]


def test_jobs_hold_at_most_max_requests_and_an_image_is_never_in_two(folder, clock):
    manifest, ledger, store = folder([f"p{i}" for i in range(5)], max_requests=2)
    api = FakeBatchAPI(clock, duration=1000)
    _, summary = run(manifest, ledger, store, api, clock, no_wait=True)
    assert [len(j["requests"]) for j in api.jobs.values()] == [2, 2, 1]
    assert "5 images wait in 3 live batch jobs" in summary.stop.message
    _, again = run(manifest, ledger, store, api, clock, no_wait=True)
    assert len(api.jobs) == 3 and again.submitted == 0  # every image is already in a job


def test_an_image_changed_while_in_a_job_is_not_saved_from_it(folder, clock, tmp_path):
    manifest, ledger, store = folder(["a fox", "a whale"])
    api = FakeBatchAPI(clock, duration=10)
    run(manifest, ledger, store, api, clock, no_wait=True)
    edited, _, _ = folder(["a fox", "a whale at night"])  # p1's fingerprint changes
    clock.now += 20
    run(edited, ledger, store, api, clock, no_wait=True)
    rows = {row.id: row.status for row in ledger.rows()}
    assert rows == {"p0": "done", "p1": "pending"}
    second = list(api.jobs.values())[1]
    assert [prompt for _, prompt in second["requests"]] == ["a whale at night"]


def test_an_online_run_leaves_images_in_live_jobs_to_them(folder, clock, tmp_path):
    from nbbatch.engine.run import run_batch
    from nbbatch.settings import RunOptions, Settings
    from nbbatch.sim import SimulatorOptions
    from nbbatch.sim.inprocess import simulator_transport

    manifest, ledger, store = folder(["a fox", "a whale"])
    api = FakeBatchAPI(clock, duration=1000)
    run(manifest, ledger, store, api, clock, no_wait=True, budget=Budget(max_images=1))
    ledger.close()
    online = replace(manifest, mode="online")
    events = []
    summary = run_batch(Settings(online, tmp_path / "out", RunOptions()),
                        env={"GEMINI_API_KEY": "k"}, cwd=tmp_path,
                        on_event=lambda e, p: events.append(e.message), handle_signals=False,
                        transport_factory=lambda name: simulator_transport(SimulatorOptions()))
    with Ledger.open(tmp_path / "out" / "ledger.db") as ledger:
        states = {row.id: row.status for row in ledger.rows()}
    assert states == {"p0": "pending", "p1": "done"}  # p0 waits in its job, p1 went online
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert any("1 images wait in live batch jobs" in m for m in events)


def test_a_finished_job_whose_results_are_not_there_yet_is_not_closed(folder, clock):
    manifest, ledger, store = folder(["a", "b"])
    api = FakeBatchAPI(clock, duration=5)
    original = api.get

    async def without_results(name):  # SUCCEEDED with 2 made, but no results location
        status = await original(name)
        return replace(status, succeeded=2, results=None)

    api.get = without_results
    _, summary = run(manifest, ledger, store, api, clock, budget=Budget(max_duration=60))
    assert summary.stop.kind == StopKind.MAX_DURATION and ledger.batch.in_open_jobs() == 2
    api.get = original  # the results show up: collected, nothing sent again
    _, summary = run(manifest, ledger, store, api, clock)
    assert summary.exit_code == ExitCode.OK and len(api.jobs) == 1
