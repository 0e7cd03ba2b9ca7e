"""nbbatch's own cost per image, and the start-up time of `nbbatch --help`.

Per image: parse a Gemini response carrying a ~1 MB image (JSON, base64, image check), hash it,
write it atomically, and record the attempt and the save in the ledger — everything nbbatch does
besides waiting for the network. Measured as CPU time (process_time). SPEC target: < 20 ms per
image; `nbbatch --help` < 0.5 s.

    python benchmarks/overhead.py [--images 50]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from nbbatch.providers.google import classify
from nbbatch.redaction import Redactor
from nbbatch.store.files import ImageStore, sha256_hex
from nbbatch.store.ledger import Ledger
from nbbatch.store.naming import choose_name
from nbbatch.store.records import Attempt, PlannedImage

KEY = "AIzaSyBenchmark-0123456789abcdefghijklmno"  # redacted from what is stored


def one_megabyte_jpeg() -> bytes:
    noise = Image.frombytes("RGB", (1400, 1000), os.urandom(1400 * 1000 * 3))
    buf = io.BytesIO()
    noise.save(buf, "JPEG", quality=80)  # about 1 MB of noise
    return buf.getvalue()


def gemini_body(image: bytes) -> bytes:
    return json.dumps({
        "candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(image).decode()},
             "thoughtSignature": "c2ln"}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1120},
        "modelVersion": "gemini-3-pro-image", "responseId": "bench",
    }).encode()


def per_image_cpu(images: int) -> tuple[list[float], int, int]:
    jpeg = one_megabyte_jpeg()
    body = gemini_body(jpeg)
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        store = ImageStore(out)
        store.prepare()
        redact = Redactor([KEY])  # one per provider, as in a run
        with Ledger.open(out / "ledger.db") as ledger:
            ledger.sync(PlannedImage(f"img{i}", 1, "f" * 64, i) for i in range(images))
            for i in range(images):
                key = (f"img{i}", 1)
                start = time.process_time()
                # As a run does it: the attempt recorded before sending and updated after,
                # the answer classified (decoded) and redacted, a name chosen, the save.
                attempt = ledger.record_attempt(key, Attempt(time.time(), "gemini", "m",
                                                             "interrupted", None, None, None,
                                                             True, 0.134))
                image = classify(200, {}, body, provider="gemini", redact=redact)
                ledger.update_attempt(attempt, Attempt(time.time(), "gemini", image.model,
                                                       "success", 200, 1.0, None, False, 0.134))
                digest = sha256_hex(image.data)
                relative = choose_name(store.images, f"img{i}.jpg", key, digest,
                                       ledger.file_owner).relative
                ledger.begin_save(key, file=relative, sha256=digest, bytes=len(image.data),
                                  provider="gemini", model=image.model, cost_usd=0.134,
                                  usage=dict(image.usage))
                store.write(relative, image.data, digest)
                ledger.mark_done(key)
                timings.append(time.process_time() - start)
    return timings, len(jpeg), len(body)


def help_seconds(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbbatch", "--help"], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args()
    timings, image_bytes, body_bytes = per_image_cpu(args.images)
    ms = [t * 1000 for t in timings]
    print(f"per image ({image_bytes / 1e6:.2f} MB image, {body_bytes / 1e6:.2f} MB response, "
          f"{args.images} images): "
          f"median {statistics.median(ms):.1f} ms CPU, max {max(ms):.1f} ms (target < 20 ms)")
    print(f"nbbatch --help: median {help_seconds():.2f} s wall (target < 0.5 s)")


if __name__ == "__main__":
    main()
