"""A short chaos run: the real CLI SIGKILLed at seeded random instants, stopped past its request
timeout and continued, sent SIGHUP; every invariant checked after every run (see
benchmarks/chaos.py, which holds the checks and runs the long version)."""

from __future__ import annotations

import pytest
from PIL import Image

from benchmarks.chaos import (
    ChaosConfig,
    Violation,
    check_batch_jobs,
    check_budget,
    check_no_repeat,
    check_nothing_wasted,
    inspect_output,
    run_chaos,
)

pytestmark = pytest.mark.e2e
SEED = 12


def test_kill_9_at_random_instants_loses_nothing_and_pays_nothing_twice(tmp_path):
    cfg = ChaosConfig(
        kills=6, seed=SEED, images=8, concurrency=3, latency=(0.05, 0.2), hang=0.6,
        timeout=0.4, retry_delay=0.1, startup=0.7, span=1.0, early_share=0.25,
        crash_share=0.3, stop_share=0.15, hup_share=0.1,
    )
    figures = run_chaos(cfg, tmp_path, report=lambda line: None)

    # run_chaos raises Violation at the first broken promise; these are the figures it kept.
    assert figures.kills == 6
    assert figures.batches >= 1 and figures.images == figures.batches * 8
    assert 0 <= figures.wasted <= figures.interruptions * cfg.concurrency
    assert figures.successes + sum(figures.outcomes.values()) == figures.requests
    # The seed draws every kind: early kills (start-up, lock, sync), mid-run kills, crash
    # points inside a save, stops past the request timeout, and SIGHUP.
    assert set(figures.kill_kinds) == {"early", "mid-run", "crash point"}
    # Stops and SIGHUPs drawn for a run that had already finished are not delivered; the
    # seed draws enough that some land mid-run.
    assert figures.stops + figures.hups >= 1


def test_the_checks_catch_a_torn_image_an_orphan_a_repeat_and_waste(tmp_path):
    """The checks themselves: a chaos run that cannot fail proves nothing."""
    images = tmp_path / "out" / "images"
    images.mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 torn")
    with pytest.raises(Violation, match="not a whole image"):
        inspect_output(tmp_path / "out")
    (images / "a.jpg").unlink()
    Image.new("RGB", (4, 4)).save(images / "b.png")
    with pytest.raises(Violation, match="belongs to no done image"):
        inspect_output(tmp_path / "out")
    log = [{"t": 0, "prompt": "p", "outcome": "success"}] * 3
    with pytest.raises(Violation, match="requested again"):
        check_no_repeat(log, 2, {"p": "after kill 1"})
    with pytest.raises(Violation, match="more than 1 x 1 were lost"):
        check_budget(log, secured_images=1, kills=1, concurrency=1)
    with pytest.raises(Violation, match="answers were thrown away"):
        check_nothing_wasted(log, 1, newly_secured={"p"})


def test_batch_mode_kill_9_while_creating_polling_downloading_and_saving(tmp_path):
    cfg = ChaosConfig(
        kills=4, seed=2, images=6, concurrency=3, latency=(0.02, 0.1), hang=0.6, timeout=0.4,
        retry_delay=0.1, startup=0.7, span=1.0, early_share=0.0, crash_share=1.0,
        faults="500=0.1", mode="batch", batch_size=3, batch_duration=0.3,
        crash_points=("creating", "polling", "downloading", "mid-write"),
    )
    figures = run_chaos(cfg, tmp_path, report=lambda line: None)
    # Each kill was checked: no image in two live jobs, none made twice, nothing torn or lost.
    assert figures.kills == 4
    assert set(figures.kill_phases) == {"creating", "polling", "downloading", "mid-write"}
    assert figures.images == figures.batches * 6 and figures.wasted == 0


def test_the_batch_checks_catch_an_image_in_two_live_jobs_and_one_made_twice():
    first = {"name": "j1", "created": 0.0, "ends": 5.0,
             "requests": [{"prompt": "p", "outcome": "internal"}]}
    overlapping = {"name": "j2", "created": 4.0, "ends": 9.0,
                   "requests": [{"prompt": "p", "outcome": "success"}]}
    with pytest.raises(Violation, match="while j1 still held it"):
        check_batch_jobs([first, overlapping])
    made = {**first, "requests": [{"prompt": "p", "outcome": "success"}]}
    later = {**overlapping, "created": 6.0}
    with pytest.raises(Violation, match="made twice"):
        check_batch_jobs([made, later])
    check_batch_jobs([first, later])  # resubmitted after its job ended: fine
