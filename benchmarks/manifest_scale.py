"""How fast load_manifest reads big manifests (SPEC §9: plan on 100,000 prompts in < 5 s).

Generates, in a temporary folder: a 100,000-row CSV prompts file, the same as JSONL, and a
YAML manifest with 10,000 inline prompts. Every tenth row reuses one reference image and half
the rows have no id (so ids are derived). Prints seconds (best of 3) and the peak memory that
loading allocates (tracemalloc, a separate run since tracing slows Python down).

    python benchmarks/manifest_scale.py [--rows 100000] [--inline 10000]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from PIL import Image

from nbbatch.manifest import load_manifest

HEADER = """\
version: 1
defaults:
  model: gemini-3-pro-image
  aspect_ratio: "4:3"
  image_size: 1K
pacing:
  interval: 5-10
"""


def row(i: int) -> dict[str, object]:
    entry: dict[str, object] = {"prompt": f"Product shot number {i} of a red sneaker, studio light"}
    if i % 2:
        entry["id"] = f"item-{i:06d}"
    if i % 10 == 0:
        entry["images"] = ["refs/sneaker.png"]
    if i % 7 == 0:
        entry["count"] = 2
    return entry


def write_files(folder: Path, rows: int, inline: int) -> dict[str, Path]:
    (folder / "refs").mkdir()
    Image.new("RGB", (64, 64), "red").save(folder / "refs" / "sneaker.png")
    with open(folder / "prompts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "count", "images"])
        for i in range(rows):
            e = row(i)
            writer.writerow([e.get("id", ""), e["prompt"], e.get("count", ""),
                             ";".join(e.get("images", []))])  # type: ignore[arg-type]
    with open(folder / "prompts.jsonl", "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps(row(i)) + "\n")
    (folder / "csv.yaml").write_text(HEADER + "prompts_file: prompts.csv\n")
    (folder / "jsonl.yaml").write_text(HEADER + "prompts_file: prompts.jsonl\n")
    lines = [HEADER, "prompts:\n"]
    for i in range(inline):
        e = row(i)
        lines.append(f"  - prompt: {e['prompt']}\n")
        if "id" in e:
            lines.append(f"    id: {e['id']}\n")
        if "count" in e:
            lines.append(f"    count: {e['count']}\n")
        if "images" in e:
            lines.append("    images: [refs/sneaker.png]\n")
    (folder / "inline.yaml").write_text("".join(lines))
    return {
        f"CSV prompts_file, {rows:,} rows": folder / "csv.yaml",
        f"JSONL prompts_file, {rows:,} lines": folder / "jsonl.yaml",
        f"YAML, {inline:,} inline prompts": folder / "inline.yaml",
    }


def measure(path: Path) -> tuple[float, float, int]:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        manifest = load_manifest(path)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    manifest = load_manifest(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return min(times), peak / 2**20, len(manifest.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--inline", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = write_files(Path(tmp), args.rows, args.inline)
        print(f"python {sys.version.split()[0]}")
        for name, path in cases.items():
            seconds, peak_mb, n = measure(path)
            print(f"{name:<36} {seconds:6.2f} s   peak {peak_mb:6.1f} MB traced   {n:,} items")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process max RSS {maxrss:.0f} MB (includes the benchmark's own files and all runs)")


if __name__ == "__main__":
    main()
