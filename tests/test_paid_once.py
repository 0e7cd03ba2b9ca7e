"""Money: every request is in the ledger before it is sent; what may have been billed counts
against --max-cost at full price, retries included; nothing is bought that cannot be kept,
and what was paid for and could not be kept is counted, never silently dropped."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

import nbbatch.store.atomic
import nbbatch.store.files
from nbbatch.engine.budget import Budget
from nbbatch.errors import ExitCode, TransientError
from nbbatch.store.ledger import Ledger
from tests.test_runner import ScriptedProvider, manifest, run


def timeouts(n: int) -> list[TransientError]:
    return [TransientError("no complete response within 60 s", possibly_billed=True)] * n


@pytest.mark.parametrize(("concurrency", "attempts"), [(1, 6), (4, 6), (4, 2)])
def test_attempts_that_may_have_been_billed_count_against_max_cost_retries_included(
        tmp_path, clock, concurrency, attempts):
    """The server does the work of every request that timed out after sending: what it may
    bill must stay within the budget, however many retries the jobs would make."""
    m = manifest(tmp_path, [f"p{i}" for i in range(20)], concurrency=concurrency,
                 interval=0.1, attempts=attempts)
    provider = ScriptedProvider(clock, latency=1, script={f"p{i}": timeouts(5) for i in range(20)})
    summary, ledger, _ = run(tmp_path, m, provider, clock, Budget(max_cost=0.5))
    cost = ledger.cost_summary()
    assert cost.spent.usd <= 0.5 + 1e-9  # possibly billed counted as billed
    assert len(provider.starts) * 0.134 <= 0.5 + 1e-9  # every request the server worked on
    assert summary.exit_code == ExitCode.TEMPFAIL and "--max-cost" in summary.stop_reason


def test_each_request_is_in_the_ledger_before_it_is_sent(tmp_path, clock):
    """What a kill -9 during the request leaves: an interrupted, possibly billed attempt."""
    seen = []

    class Watching(ScriptedProvider):
        async def generate(self, request):
            with Ledger.open(tmp_path / "out/ledger.db") as other:  # as a later run reads it
                seen.append([(a.outcome, a.possibly_billed, a.cost_usd)
                             for a in other.attempts(("p0", 1))])
            return await super().generate(request)

    m = manifest(tmp_path, ["a"])
    summary, ledger, _ = run(tmp_path, m, Watching(clock), clock)
    assert summary.exit_code == ExitCode.OK
    assert seen == [[("interrupted", True, pytest.approx(0.134))]]
    [attempt] = ledger.attempts(("p0", 1))
    assert attempt.outcome == "success" and not attempt.possibly_billed  # updated after


class LowDisk:
    """nbbatch.store.files' view of `os` with `free` bytes left on every disk."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __getattr__(self, name):
        return getattr(os, name)

    def statvfs(self, path):
        real = os.statvfs(path)
        return os.statvfs_result((real.f_bsize, 1, real.f_blocks, self.free, self.free,
                                  *real[5:]))


def test_nothing_is_bought_when_the_disk_has_no_room_for_it(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(nbbatch.store.files, "os", LowDisk(free=1024))
    m = manifest(tmp_path, ["a", "b"])
    provider = ScriptedProvider(clock)
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert provider.starts == []
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert "the disk is full" in summary.stop_reason
    assert ledger.cost_summary().possibly_spent_usd == 0


class FailingWrites:
    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_an_image_paid_for_and_not_saved_is_counted_and_no_more_follow_than_slots(
        tmp_path, clock, monkeypatch):
    monkeypatch.setattr(nbbatch.store.atomic, "os", FailingWrites())
    m = manifest(tmp_path, [f"p{i}" for i in range(12)], concurrency=3, interval=0)
    provider = ScriptedProvider(clock, latency=2)
    summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.TEMPFAIL
    # The first answer's save fails and stops the run; what was already on its way may
    # arrive and fail the same way, but never more than the in-flight slots.
    assert 1 <= len(provider.starts) <= 3
    cost = ledger.cost_summary()
    assert cost.spent.billed_usd == pytest.approx(0.134 * len(provider.starts))  # paid for
    assert cost.on_disk_usd == 0 and ledger.counts().done == 0  # and nothing to show for it
    assert all(a.possibly_billed for i in range(12) for a in ledger.attempts((f"p{i}", 1)))


def test_a_save_holds_its_in_flight_slot(tmp_path, clock, monkeypatch):
    """Answers received and still being written count as in flight: a request starts only
    when fewer than `concurrency` are on their way or being saved."""
    saving, lock = [0], threading.Lock()
    busy: list[int] = []  # requests on their way plus saves under way, at each start
    real_write = nbbatch.store.files.ImageStore.write

    def write(self, relative, data, sha256):
        with lock:
            saving[0] += 1
        time.sleep(0.02)  # a slow disk: the event loop goes on meanwhile
        with lock:
            saving[0] -= 1
        return real_write(self, relative, data, sha256)

    class Counting(ScriptedProvider):
        async def generate(self, request):
            busy.append(self.in_flight + 1 + saving[0])
            return await super().generate(request)

    monkeypatch.setattr(nbbatch.store.files.ImageStore, "write", write)
    m = manifest(tmp_path, [f"p{i}" for i in range(10)], concurrency=2, interval=0)
    summary, _, _ = run(tmp_path, m, Counting(clock, latency=1), clock)
    assert summary.counts.done == 10
    assert max(busy) <= 2, busy


@pytest.mark.parametrize("concurrency", [1, 2, 3, 4])
@pytest.mark.parametrize("latency", [0.0, 0.5, 2.0])
def test_a_budget_that_fits_the_images_exactly_makes_all_of_them(tmp_path, clock,
                                                                 concurrency, latency):
    """An image's cost moves from what it reserved to what was spent in one step: counted
    twice for a moment, the next attempt would see the budget gone."""
    m = manifest(tmp_path, [f"p{i}" for i in range(6)], concurrency=concurrency, interval=0)
    summary, ledger, _ = run(tmp_path, m, ScriptedProvider(clock, latency=latency), clock,
                             Budget(max_cost=6 * 0.134 + 1e-6))
    assert summary.exit_code == ExitCode.OK, summary.stop_reason
    assert ledger.counts().done == 6
