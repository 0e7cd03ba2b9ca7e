"""Ledger at manifest scale: sync, re-sync, pending, counts and a rows() walk over N images.

    python benchmarks/ledger_scale.py [N]      (default 100,000)

Prints seconds per step and the process's peak RSS. Target (SPEC §9): resume planning and
status on 100,000 images well under 5 s and 300 MB; sync alone well under 1 s.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path

from nbbatch.store.ledger import Ledger
from nbbatch.store.records import Attempt, PlannedImage


def plan(n: int, salt: str = "") -> list[PlannedImage]:
    return [
        PlannedImage(f"item-{i:06d}", 1, hashlib.sha256(f"{salt}{i}".encode()).hexdigest(), i)
        for i in range(n)
    ]


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{label:<34} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    images = plan(n)
    changed = plan(n // 10, salt="v2") + images[n // 10 :]
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "ledger.db") as ledger:
        print(f"{n:,} images")
        r = timed("sync (fresh)", lambda: ledger.sync(images))
        assert r.new == n, r
        r = timed("sync (unchanged)", lambda: ledger.sync(images))
        assert r.unchanged == n, r
        # Mark a tenth done, the way a run would, to give status something to report.
        for img in images[: n // 10]:
            key = (img.id, img.index)
            ledger.record_attempt(key, Attempt(time.time(), "gemini", "m", "success"))
            ledger.begin_save(key, file=f"images/{img.id}.png", sha256="0" * 64, bytes=1000,
                              provider="gemini", model="m", cost_usd=0.134, usage=None)
            ledger.mark_done(key)
        r = timed(f"sync ({n // 10:,} fingerprints changed)", lambda: ledger.sync(changed))
        assert r.changed == n // 10, r
        pending = timed("pending()", ledger.pending)
        assert len(pending) == n
        del pending
        counts = timed("counts()", ledger.counts)
        assert counts.total == n
        timed("counts_by_provider()", ledger.counts_by_provider)
        timed("cost_summary()", ledger.cost_summary)
        walked = timed("rows() full iteration", lambda: sum(1 for _ in ledger.rows()))
        assert walked == n
        size = (Path(tmp) / "ledger.db").stat().st_size
        print(f"ledger.db size                     {size / 1e6:8.1f} MB")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak RSS                           {peak_kb / 1024:8.1f} MB")


if __name__ == "__main__":
    main()
