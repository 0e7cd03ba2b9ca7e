"""A short chaos run: the real CLI SIGKILLed at seeded random instants, every invariant checked
after every kill (see benchmarks/chaos.py, which holds the checks and runs the long version)."""

from __future__ import annotations

import pytest
from PIL import Image

from benchmarks.chaos import (
    ChaosConfig,
    Violation,
    check_budget,
    check_no_repeat,
    inspect_output,
    run_chaos,
)

pytestmark = pytest.mark.e2e


def test_kill_9_at_random_instants_loses_nothing_and_pays_nothing_twice(tmp_path):
    cfg = ChaosConfig(
        kills=8, seed=11, images=12, concurrency=3, latency=(0.02, 0.1), hang=0.6,
        timeout=0.4, retry_delay=0.1, startup=0.7, span=1.0, early_share=0.3, crash_share=0.3,
    )
    figures = run_chaos(cfg, tmp_path, report=lambda line: None)

    # run_chaos raises Violation at the first broken promise; these are the figures it kept.
    assert figures.kills == 8
    assert figures.batches >= 1 and figures.images == figures.batches * 12
    assert 0 <= figures.wasted <= figures.kills * cfg.concurrency
    assert figures.successes + sum(figures.outcomes.values()) == figures.requests
    # The seed draws kills of every kind: early ones (start-up, lock, sync), mid-run ones, and
    # crash points inside a save.
    assert set(figures.kill_kinds) == {"early", "mid-run", "crash point"}


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
