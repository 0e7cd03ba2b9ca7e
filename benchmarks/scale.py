"""`plan`, `status` and resume planning on a 100,000-prompt manifest: seconds and peak memory.

Each command runs as its own `nbbatch` process, which records its own peak RSS (VmHWM). The
ledger is filled as if every image had been made (the benchmark marks them done directly, each
with its own file), so the `run` measured here is pure resume planning: lock, recovery, sync,
a stat per done image, pending — then nothing to do. SPEC target: each under 5 s and 300 MB.

    python benchmarks/scale.py [--prompts 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import compileall
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbbatch
from nbbatch.engine.planned import planned_digest, planned_images
from nbbatch.manifest import load_manifest
from nbbatch.settings import manifest_record
from nbbatch.store.ledger import Ledger

# Each process records its own high-water mark (VmHWM) as it exits, in the file named by
# NBBATCH_PEAK_FILE: wait4's ru_maxrss would include this benchmark's own memory, which Linux
# carries into a child at fork.
BOOT = """import atexit, os, sys
def _peak():
    with open('/proc/self/status') as status, open(os.environ['NBBATCH_PEAK_FILE'], 'w') as out:
        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))
atexit.register(_peak)
sys.argv[0] = 'nbbatch'
from nbbatch.cli import main
main()
"""


def measure(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Seconds, peak RSS in MB, exit code of one nbbatch process."""
    peak_file = cwd / "peak-kb"
    env = {**os.environ, "NBBATCH_STATE_DIR": str(cwd / "state"),
           "NBBATCH_PEAK_FILE": str(peak_file)}
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-c", BOOT, *args], cwd=cwd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, int(peak_file.read_text()) / 1024, code


def write_manifest(folder: Path, prompts: int) -> Path:
    with open(folder / "prompts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "aspect_ratio"])
        for i in range(prompts):
            writer.writerow([f"item-{i:06d}", f"A product photo of catalogue item {i}, studio "
                             "light, white background", "1:1"])
    manifest = folder / "prompts.yaml"
    manifest.write_text("version: 1\noutput: out\ndefaults: {provider: simulator, model: "
                        "gemini-3-pro-image}\nprompts_file: prompts.csv\n")
    return manifest


def mark_everything_done(manifest: Path, out: Path) -> None:
    """The ledger as a finished run leaves it: every request and the settings recorded."""
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_manifest(manifest)
    with Ledger.open(out / "ledger.db") as ledger:
        ledger.sync(planned_images(loaded), loaded.items, digest=planned_digest(loaded))
        ledger.start_run(manifest=str(manifest), options={}, cwd=str(manifest.parent),
                         pid=os.getpid(), settings=manifest_record(loaded))
        db = ledger._conn  # benchmark set-up only: a real run makes each image
        with db:
            db.execute("UPDATE images SET status='done', file='images/' || id || '.jpg',"
                       " sha256='0', bytes=1, cost_usd=0")
    # The file every done image names, each its own as in a real folder: a run, `plan` and
    # `status` stat each one (a deleted file is made again), and 100,000 names in one
    # folder cost the file system more than one name looked up again and again.
    images = out / "images"
    images.mkdir(exist_ok=True)
    for item in loaded.items:
        (images / f"{item.id}.jpg").write_bytes(b"x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each command; the fastest and slowest are shown")
    args = parser.parse_args()
    # As installed: pip compiles the bytecode, which PYTHONDONTWRITEBYTECODE would otherwise
    # have every process compile again for each module.
    compileall.compile_dir(Path(nbbatch.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_manifest(folder, args.prompts)
        print(f"{args.prompts:,} prompts (CSV prompts_file), each command {args.repeat} times")
        report("plan (no ledger)", ["plan", str(manifest)], folder, args.repeat)
        mark_everything_done(manifest, folder / "out")
        for label, command in [
            ("plan (all done)", ["plan", str(manifest)]),
            ("run = resume planning", ["run", str(manifest)]),
            ("resume (ledger alone)", ["resume", str(folder / "out")]),
            ("status", ["status", str(folder / "out")]),
            ("status --json", ["status", str(folder / "out"), "--json"]),
        ]:
            report(label, command, folder, args.repeat)


def report(label: str, command: list[str], folder: Path, repeat: int) -> None:
    runs = [measure(command, folder) for _ in range(repeat)]
    fastest, slowest = min(r[0] for r in runs), max(r[0] for r in runs)
    rss_mb, codes = max(r[1] for r in runs), {r[2] for r in runs}
    verdict = "ok" if slowest < 5 and rss_mb < 300 else "OVER TARGET"
    print(f"  {label:24} {fastest:5.2f}-{slowest:5.2f} s  {rss_mb:6.1f} MB  "
          f"exit {','.join(map(str, sorted(codes)))}  {verdict}")


if __name__ == "__main__":
    main()
