"""A process stopped (Ctrl-Z, SIGSTOP) past its request timeout and continued: answers that
arrived meanwhile are used, not counted as timeouts and bought again; a request's deadline
counts the time the process was running."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import pytest

import nbbatch.providers.deadline as deadline_module
from nbbatch.providers.deadline import RunningClock, running_deadline
from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import KEY, configure, requests_log, start_cli, wait_until, write_manifest


def test_a_gap_between_heartbeats_counts_as_little_running_time():
    now = [0.0]
    clock = RunningClock(monotonic=lambda: now[0])
    now[0] = 0.2
    clock.beat()
    assert clock.now() == pytest.approx(0.2)
    now[0] = 100.2  # stopped for 100 s
    assert clock.now() == pytest.approx(0.2 + deadline_module.CREDIT)
    clock.beat()
    now[0] = 100.4
    assert clock.now() == pytest.approx(0.4 + deadline_module.CREDIT)


def _stall(seconds: float) -> None:
    """The event loop does not run for `seconds`, as in a stopped process."""
    time.sleep(seconds)


def test_a_deadline_leaves_out_time_the_loop_did_not_run_and_a_plain_timeout_does_not(
        monkeypatch):
    monkeypatch.setattr(deadline_module, "CREDIT", 0.1)

    async def work(deadline):
        async with deadline(0.5):
            await asyncio.sleep(0.05)
            _stall(0.8)  # longer than the deadline: the process was stopped
            await asyncio.sleep(0.05)  # the answer is read after it continued
        return "answer used"

    assert asyncio.run(work(running_deadline)) == "answer used"
    with pytest.raises(TimeoutError):  # what the request timeout used to be
        asyncio.run(work(asyncio.timeout))


def test_an_answer_waiting_when_the_process_continues_is_read_before_any_deadline_fires():
    """Stopped just before its deadline: the running time passes it on waking, but what
    arrived while the process was stopped is read first."""
    async def work():
        async with running_deadline(0.3) as deadline:
            await asyncio.sleep(0.25)
            _stall(0.7)  # stopped, with the answer arriving meanwhile
            await asyncio.sleep(0.05)  # reading what is waiting
            deadline.complete()
        return "read"

    assert asyncio.run(work()) == "read"


def test_a_deadline_still_cuts_off_what_is_really_slow():
    async def slow():
        async with running_deadline(0.3):
            await asyncio.sleep(2)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(slow())
    assert time.monotonic() - started < 1.5


def test_work_marked_complete_is_never_cut_off():
    async def completed():
        async with running_deadline(0.1) as deadline:
            deadline.complete()
            await asyncio.sleep(0.3)  # past the deadline, after the body was whole
        return "kept"

    assert asyncio.run(completed()) == "kept"


@pytest.mark.e2e
def test_a_run_stopped_past_its_timeout_uses_the_answers_that_arrived(tmp_path):
    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=4)) as sim:
        configure(sim.url, latency=[0.5, 0.5])
        n = 6
        manifest = write_manifest(
            tmp_path / "m.yaml", [f"stopped {i}" for i in range(n)], base_url=sim.url,
            concurrency=3, interval="0.05",
            providers={"gemini": {"api_key_env": "GEMINI_API_KEY", "base_url": sim.url,
                                  "timeout": 1}})
        proc = start_cli(tmp_path, "run", manifest)
        try:
            # The first request goes alone; once it answered, the next ones are in flight.
            assert wait_until(lambda: len(requests_log(sim.url)) >= 3)
            proc.send_signal(signal.SIGSTOP)  # Ctrl-Z
            time.sleep(1.8)  # past the 1 s timeout; the server answers meanwhile
            proc.send_signal(signal.SIGCONT)  # fg
            assert proc.wait(30) == 0, (tmp_path / "cli.log").read_text()
        finally:
            proc.kill()
            proc.wait()
        with sqlite3.connect(tmp_path / "out/ledger.db") as db:
            outcomes = [o for (o,) in db.execute("SELECT outcome FROM attempts")]
        assert outcomes == ["success"] * n, outcomes  # no answer was taken for a timeout
        assert len(requests_log(sim.url)) == n  # and nothing was bought twice
