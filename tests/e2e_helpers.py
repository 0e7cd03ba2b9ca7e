"""Running the real CLI in a subprocess against the simulator on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

KEY = "sim-test-key-5f1c9a"


def write_manifest(path: Path, prompts: list, *, base_url: str, interval="0.02",
                   concurrency=4, max_attempts=8, **extra) -> Path:
    doc = {
        "version": 1,
        "output": "out",
        "defaults": {"provider": "gemini", "model": "gemini-3-pro-image", "aspect_ratio": "1:1"},
        "providers": {"gemini": {"api_key_env": "GEMINI_API_KEY", "base_url": base_url,
                                 "timeout": 10}},
        "pacing": {"interval": interval, "concurrency": concurrency},
        "retry": {"max_attempts": max_attempts, "initial_delay": 0.02, "max_delay": 0.1},
        "prompts": [p if isinstance(p, dict) else {"id": f"img{i}", "prompt": p}
                    for i, p in enumerate(prompts)],
    }
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def env(tmp_path: Path, key: str | None = KEY) -> dict:
    result = {k: v for k, v in os.environ.items()
              if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY",
                           "STABILITY_API_KEY", "OPENROUTER_API_KEY")}
    result["NBBATCH_STATE_DIR"] = str(tmp_path / "state")
    if key is not None:
        result["GEMINI_API_KEY"] = key
    return result


def nbbatch_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "nbbatch", *map(str, args)]


def run_cli(tmp_path: Path, *args, key: str | None = KEY, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(nbbatch_cmd(*args), cwd=cwd or tmp_path, env=env(tmp_path, key),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(tmp_path: Path, *args, key: str | None = KEY) -> subprocess.Popen:
    """Start the CLI in the background; its output goes to tmp_path/cli.log."""
    with open(tmp_path / "cli.log", "ab") as log:
        return subprocess.Popen(nbbatch_cmd(*args), cwd=tmp_path, env=env(tmp_path, key),
                                stdout=log, stderr=subprocess.STDOUT)


def requests_log(base_url: str) -> list[dict]:
    return httpx.get(f"{base_url}/_sim/requests", timeout=5).json()


def metadata_log(base_url: str) -> list[dict]:
    """The free metadata requests (pre-flight) the simulator answered."""
    return httpx.get(f"{base_url}/_sim/metadata", timeout=5).json()


def configure(base_url: str, **options) -> None:
    httpx.post(f"{base_url}/_sim/configure", json=options, timeout=5).raise_for_status()


def ledger_rows(out: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{out / 'ledger.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM images").fetchall()


def done_ids(out: Path) -> set[tuple[str, int]]:
    """Done keys; empty while the ledger is still being created."""
    try:
        return {(r["id"], r["idx"]) for r in ledger_rows(out) if r["status"] == "done"}
    except sqlite3.OperationalError:  # no file yet, or no schema yet
        return set()


def status_json(tmp_path: Path, out: Path) -> dict:
    result = run_cli(tmp_path, "status", out, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(predicate, timeout: float = 20, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
