"""Throughput against the paced rate, with latency five times the pacing interval.

Runs the real `nbbatch run` CLI against the simulator on 127.0.0.1, and beside it the plain
"call, then sleep one interval" loop against the same server. Request starts are timed by the
server, so both are measured the same way. Prints the achieved start rate as a share of the
paced rate (1 / interval); SPEC target for nbbatch: >= 0.95.

    python benchmarks/throughput.py [--interval 0.2] [--images 24 120] [--plain-images 12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from nbbatch.sim import SimulatorOptions, SimulatorServer

KEY = "benchmark-key"


def start_rate(times: list[float]) -> float:
    return (len(times) - 1) / (max(times) - min(times))


def run_nbbatch(url: str, images: int, interval: float, latency: float, work: Path) -> list[float]:
    manifest = work / "bench.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1,
        "output": "out",
        "defaults": {"model": "gemini-3-pro-image"},
        "providers": {"gemini": {"base_url": url, "timeout": 30}},
        "pacing": {"interval": interval, "concurrency": int(latency / interval) + 3},
        "prompts": [{"id": f"b{i}", "prompt": f"benchmark {i}"} for i in range(images)],
    }))
    env = {**os.environ, "GEMINI_API_KEY": KEY, "NBBATCH_STATE_DIR": str(work / "state")}
    subprocess.run([sys.executable, "-m", "nbbatch", "run", str(manifest), "--quiet"],
                   env=env, check=True, cwd=work, stdout=subprocess.DEVNULL)
    return [r["t"] for r in httpx.get(f"{url}/_sim/requests").json()]


def run_plain_loop(url: str, images: int, interval: float) -> list[float]:
    with httpx.Client(timeout=30) as client:
        for i in range(images):
            client.post(f"{url}/v1beta/models/gemini-3-pro-image:generateContent",
                        headers={"x-goog-api-key": KEY},
                        json={"contents": [{"parts": [{"text": f"plain {i}"}]}]})
            time.sleep(interval)
    return [r["t"] for r in httpx.get(f"{url}/_sim/requests").json()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--images", type=int, nargs="+", default=[24, 120])
    parser.add_argument("--plain-images", type=int, default=12)
    args = parser.parse_args()
    latency = 5 * args.interval
    paced = 1 / args.interval
    options = SimulatorOptions(latency=(latency, latency))
    print(f"interval {args.interval:g}s, latency {latency:g}s (5x), paced rate {paced:.2f}/s")

    worst = 1.0
    for images in args.images:
        with tempfile.TemporaryDirectory() as tmp, SimulatorServer(options) as server:
            starts = run_nbbatch(server.url, images, args.interval, latency, Path(tmp))
        # Over the whole run, from its first request: the pre-flight lets every lane start
        # at full concurrency, so the first answer is not waited for.
        whole = start_rate(starts) / paced
        worst = min(worst, whole)
        print(f"nbbatch     {images:4d} images: {whole:.3f} of the paced rate (whole run)")

    with SimulatorServer(options) as server:
        plain = start_rate(run_plain_loop(server.url, args.plain_images, args.interval)) / paced
    print(f"plain loop  {args.plain_images:4d} images: {plain:.3f} of the paced rate")
    print(f"target >= 0.95 for every run length: {'met' if worst >= 0.95 else 'NOT met'}")


if __name__ == "__main__":
    main()
