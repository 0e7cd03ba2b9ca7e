"""Effective settings for one run: flags > manifest > defaults, resolved once at the edge.

RunOptions is what the user said on the command line; it is stored in the ledger (it holds no
secrets) so `nbbatch resume` rebuilds the same settings with no flags.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nbbatch.errors import UsageError
from nbbatch.manifest import apply_overrides, load_manifest
from nbbatch.model import Manifest, parse_interval

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s?)?")


@dataclass(frozen=True)
class RunOptions:
    out: str | None = None
    provider: str | None = None
    interval: str | None = None
    concurrency: int | None = None
    max_images: int | None = None
    max_cost: float | None = None
    max_duration: float | None = None  # seconds
    retry_failed: bool = False

    def to_record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class Settings:
    manifest: Manifest  # with the flags' overrides applied
    out: Path
    options: RunOptions


def default_out(manifest_path: Path) -> Path:
    return manifest_path.parent / "out" / manifest_path.stem


def resolve(manifest_path: str | Path, options: RunOptions, *, cwd: Path) -> Settings:
    """Load and validate the manifest, then lay the flags over it. Sends nothing."""
    path = Path(manifest_path)
    # As the user typed it when it is relative to where they are: shorter error messages.
    manifest = load_manifest(path if path.is_absolute() or cwd == Path.cwd() else cwd / path)
    interval = None
    if options.interval is not None:
        try:
            interval = parse_interval(options.interval)
        except ValueError as exc:
            raise UsageError(f"--interval: {exc}") from None
    if options.concurrency is not None and options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    out = (cwd / options.out) if options.out else (manifest.output or default_out(manifest.path))
    manifest = apply_overrides(
        manifest,
        provider=options.provider,
        interval=interval,
        concurrency=options.concurrency,
        out=out,
    )
    if options.provider:
        # One provider, as asked: no switching to others behind the user's back.
        manifest = replace(manifest, failover=None)
    return Settings(manifest=manifest, out=out.absolute(), options=options)


def parse_duration(text: str) -> float:
    """'90', '90s', '45m', '2h', '1h30m', '1.5h' -> seconds. UsageError for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise UsageError(f"cannot read the duration {text!r}: use forms like 90s, 45m, 2h, "
                         "1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not math.isfinite(total) or total <= 0:
        raise UsageError(f"the duration {text!r} must be more than zero (and finite)")
    return total
