"""Which output folder each working directory used last, so `nbbatch resume` needs no argument.

Kept in the user's state folder (XDG_STATE_HOME, or NBBATCH_STATE_DIR to move it), never in
the output folder; written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path


def state_dir(env: Mapping[str, str]) -> Path:
    if env.get("NBBATCH_STATE_DIR"):
        return Path(env["NBBATCH_STATE_DIR"])
    home = Path(env.get("HOME", "~")).expanduser()
    base = env.get("XDG_STATE_HOME") or str(home / ".local/state")
    return Path(base) / "nbbatch"


def _registry(env: Mapping[str, str]) -> Path:
    return state_dir(env) / "recent-runs.json"


MAX_REGISTRY_BYTES = 1 << 20  # far more folders than anyone uses


def _load(path: Path) -> dict[str, str]:
    """The registry, or nothing when it is missing, damaged, huge or not a file (a pipe
    there must not hang the run): it is only a convenience."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = json.loads(f.read(MAX_REGISTRY_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v}


def remember(cwd: Path, out: Path, env: Mapping[str, str]) -> None:
    """Best effort: a read-only home must not stop a run."""
    path = _registry(env)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{path.name}.*.tmp"):  # left by a killed run
            if stale.name[len(path.name) + 1:-4].isdigit():  # ours: NAME.<pid>.tmp
                stale.unlink(missing_ok=True)
        runs = _load(path)
        runs[str(cwd)] = str(out)
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(runs, indent=1, sort_keys=True))
        os.replace(temp, path)


def last_out(cwd: Path, env: Mapping[str, str]) -> Path | None:
    out = _load(_registry(env)).get(str(cwd))
    return Path(out) if out else None
