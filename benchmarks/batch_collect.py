"""Batch mode at scale: collecting a 1,000-image responses file of about 1.5 GB, and
submitting 10,000 images, each measured on the nbbatch process alone.

The simulator runs in this process (a thread; its CPU is not nbbatch's) and answers with
images grown to real sizes (`image_bytes`), streamed line by line as it draws them. The
nbbatch runs are separate processes, each recording its own peak memory (VmHWM); their CPU
is read from wait4 (RUSAGE_CHILDREN covers only them).

- collect: `run --no-wait` submits the 1,000 images; once the job has finished, a second
  `run --no-wait` downloads the responses file and saves every image (atomic write,
  SHA-256, ledger) - that run is what is measured, without the gallery update a run that
  made images ends with (measured after it, apart). Target: < 300 MB, < 20 ms CPU/image.
- submit: `run --no-wait` on 10,000 pending images (10 jobs of 1,000, each uploaded to the
  simulator on 127.0.0.1, so upload time is all but nil). Target: < 10 s, < 300 MB.

    python benchmarks/batch_collect.py [--images 1000] [--image-bytes 1100000] [--submit 10000]
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scale import BOOT
from nbbatch.sim import SimulatorOptions, SimulatorServer

KEY = "bench-key"
# The collection alone: the same process without the gallery update every run that made
# images ends with (its thumbnails have their own benchmark and target).
BOOT_NO_GALLERY = BOOT.replace(
    "from nbbatch.cli import main",
    "import nbbatch.engine.run as run\nrun._refresh_gallery = lambda out, summary, on_event:"
    " summary\nfrom nbbatch.cli import main")
LAST_SPLIT = [0.0, 0.0]  # user, system seconds of the last measured process


def write_manifest(folder: Path, url: str, images: int) -> Path:
    with open(folder / "prompts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        for i in range(images):
            writer.writerow([f"item-{i:05d}", f"A product photo of catalogue item {i}"])
    manifest = folder / "m.yaml"
    manifest.write_text(
        "version: 1\noutput: out\nmode: batch\nbatch: {poll_every: 0.5, max_requests: 1000}\n"
        "defaults: {provider: gemini, model: gemini-3-pro-image, aspect_ratio: '1:1'}\n"
        f"providers: {{gemini: {{base_url: '{url}', timeout: 120}}}}\n"
        "prompts_file: prompts.csv\n")
    return manifest


def measure(args: list[str], cwd: Path, boot: str = BOOT) -> tuple[float, float, float, int]:
    """Seconds, peak RSS in MB, CPU seconds (user + system) and exit code of one nbbatch
    process; the split of the CPU between user and system time is kept in LAST_SPLIT."""
    peak_file = cwd / "peak-kb"
    env = {**os.environ, "NBBATCH_STATE_DIR": str(cwd / "state"), "GEMINI_API_KEY": KEY,
           "NBBATCH_PEAK_FILE": str(peak_file)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-c", boot, *args], cwd=cwd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    LAST_SPLIT[:] = [user, system]
    return seconds, int(peak_file.read_text()) / 1024, user + system, code


def machine_speed(image_bytes: int) -> float:
    """Milliseconds this machine takes, right now, to base64-decode one image's line: the
    largest single cost of collecting it, and a yardstick for the figures (a loaded or
    throttled machine takes longer for everything)."""
    encoded = base64.b64encode(os.urandom(image_bytes))
    start = time.process_time()
    for _ in range(20):
        base64.b64decode(encoded)
    return (time.process_time() - start) / 20 * 1000


def collect(images: int, image_bytes: int) -> None:
    print(f"machine: base64-decoding one {image_bytes * 4 / 3 / 1e6:.2f} MB line takes "
          f"{machine_speed(image_bytes):.1f} ms")
    options = SimulatorOptions(api_key=KEY, batch_duration=1.0, image_bytes=image_bytes)
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(options) as sim:
        folder = Path(tmp)
        manifest = write_manifest(folder, sim.url, images)
        seconds, peak, cpu, code = measure(["run", str(manifest), "--no-wait"], folder)
        print(f"submit {images} images: {seconds:.2f} s, {peak:.0f} MB, exit {code}")
        while httpx.get(f"{sim.url}/_sim/batches").json()[-1]["phase"] != "succeeded":
            time.sleep(0.2)
        seconds, peak, cpu, code = measure(["run", str(manifest), "--no-wait"], folder,
                                           BOOT_NO_GALLERY)
        files = list((folder / "out" / "images").iterdir())
        size = sum(f.stat().st_size for f in files)
        line = size / len(files) * 4 / 3 if files else 0  # base64 of each image, per line
        print(f"collect {len(files)} images (responses file ~{line * len(files) / 1e9:.2f} GB, "
              f"{size / 1e9:.2f} GB of images): {seconds:.1f} s, peak {peak:.0f} MB, "
              f"nbbatch CPU {cpu:.1f} s (user {LAST_SPLIT[0]:.1f}, system {LAST_SPLIT[1]:.1f}) "
              f"= {cpu / max(len(files), 1) * 1000:.1f} ms per image, "
              f"exit {code}  {_verdict(peak < 300 and cpu / max(len(files), 1) < 0.020)}")
        seconds, peak, cpu, code = measure(["gallery", "out"], folder)
        print(f"  then the gallery update the same run would end with (1,000 new thumbnails): "
              f"{seconds:.1f} s, {cpu / max(len(files), 1) * 1000:.1f} ms CPU per image")


def submit(images: int) -> None:
    options = SimulatorOptions(api_key=KEY, batch_duration=3600.0)
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(options) as sim:
        folder = Path(tmp)
        manifest = write_manifest(folder, sim.url, images)
        seconds, peak, cpu, code = measure(["run", str(manifest), "--no-wait"], folder)
        jobs = httpx.get(f"{sim.url}/_sim/batches").json()
        print(f"submit {images} images in {len(jobs)} jobs: {seconds:.2f} s, peak {peak:.0f} MB,"
              f" CPU {cpu:.1f} s, exit {code}  {_verdict(seconds < 10 and peak < 300)}")


def _verdict(ok: bool) -> str:
    return "ok" if ok else "OVER TARGET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--image-bytes", type=int, default=1_100_000)
    parser.add_argument("--submit", type=int, default=10_000)
    args = parser.parse_args()
    collect(args.images, args.image_bytes)
    submit(args.submit)


if __name__ == "__main__":
    main()
