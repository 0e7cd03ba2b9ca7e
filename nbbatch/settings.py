"""Effective settings for one run: flags > manifest > defaults, resolved once at the edge.

RunOptions is what the user said on the command line. Both it and the effective manifest
(`manifest_record`: providers, pacing, retry, failover — no secrets, keys live in the
environment) are stored in the ledger with each run, and the items' requests beside them, so
`nbbatch resume` rebuilds the same settings from the ledger alone (`from_ledger`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nbbatch.errors import LedgerError, UsageError
from nbbatch.manifest import apply_overrides, load_manifest
from nbbatch.manifest.batch import check_batch_mode
from nbbatch.model import (
    BatchConfig,
    FailoverConfig,
    Item,
    Manifest,
    PacingConfig,
    ProviderConfig,
    RetryConfig,
    parse_interval,
)

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
    mode: str | None = None  # "online" | "batch": overrides the manifest's mode
    no_wait: bool = False  # batch mode: submit and collect, then return without waiting

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
    _check_budget(options)  # flags first: a wrong number is said before a manifest is read
    path = Path(manifest_path)
    # As the user typed it when it is relative to where they are: shorter error messages.
    manifest = load_manifest(path if path.is_absolute() or cwd == Path.cwd() else cwd / path)
    interval = None
    if options.interval is not None:
        try:
            interval = parse_interval(options.interval)
        except ValueError as exc:
            raise UsageError(f"--interval: {exc}") from None
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
    if options.mode is not None:
        if options.mode not in ("online", "batch"):
            raise UsageError(f"--mode must be online or batch, got {options.mode!r}")
        manifest = replace(manifest, mode="batch" if options.mode == "batch" else "online")
    if manifest.mode == "batch":
        check_batch_mode(manifest, str(manifest_path))
    return Settings(manifest=manifest, out=out.absolute(), options=options)


def _check_budget(options: RunOptions) -> None:
    """Budgets are caps: a negative or zero one would stop every run before it starts, and
    NaN would silently mean no limit."""
    cost, images, seconds = options.max_cost, options.max_images, options.max_duration
    if cost is not None and not (math.isfinite(cost) and cost > 0):
        raise UsageError(f"--max-cost must be an amount in USD above 0, like 5 or 0.50; "
                         f"got {cost:g}")
    if images is not None and images < 1:
        raise UsageError(f"--max-images must be at least 1; got {images}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--max-duration must be more than zero (and finite), got "
                         f"{seconds:g} s")
    if options.concurrency is not None and options.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {options.concurrency}")


def manifest_record(manifest: Manifest) -> dict[str, Any]:
    """The effective manifest, minus its items, as JSON-ready data (no secrets in it)."""
    return {
        "providers": {name: {**asdict(config), "options": dict(config.options)}
                      for name, config in manifest.providers.items()},
        "pacing": {"interval": [manifest.pacing.interval.low, manifest.pacing.interval.high],
                   "concurrency": manifest.pacing.concurrency},
        "retry": asdict(manifest.retry),
        "failover": asdict(manifest.failover) if manifest.failover else None,
        "mode": manifest.mode,
        "batch": asdict(manifest.batch),
    }


def from_ledger(record: dict[str, Any], items: list[Item], *, manifest_path: str, out: Path,
                options: RunOptions) -> Settings:
    """The settings a run recorded, for `resume`: no manifest file, no flags needed."""
    try:
        failover = record.get("failover")
        manifest = Manifest(
            path=Path(manifest_path), output=out,
            providers={name: ProviderConfig(**config)
                       for name, config in record["providers"].items()},
            pacing=PacingConfig(parse_interval(record["pacing"]["interval"]),
                                record["pacing"]["concurrency"]),
            retry=RetryConfig(**record["retry"]),
            failover=FailoverConfig(**{**failover, "order": tuple(failover["order"])})
            if failover else None,
            items=tuple(items),
            # Ledgers from before batch mode recorded neither: online, default batch settings.
            mode="batch" if record.get("mode") == "batch" else "online",
            batch=BatchConfig(**record.get("batch") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the ledger in {out} records settings this nbbatch cannot read "
                         f"({exc}); use nbbatch run MANIFEST --out {out}") from None
    return Settings(manifest=manifest, out=out, options=options)


def resume_settings(out: Path) -> Settings:
    """The settings the last run in `out` recorded. A ledger written before runs recorded
    their settings falls back on the manifest file that run named."""
    from nbbatch.store import open_for_reading

    with open_for_reading(out) as ledger:
        last = ledger.last_run()
        items = ledger.items() if last and last.settings else []
    if last is None:
        raise UsageError(f"{out} has a ledger but no recorded run; use nbbatch run MANIFEST")
    if not isinstance(last.options, dict):
        raise LedgerError(f"the ledger in {out} has a damaged record of the last run's "
                          f"options; use nbbatch run MANIFEST --out {out} to continue")
    options = replace(RunOptions.from_record(last.options), out=str(out))
    _check_budget(options)  # recorded by an older nbbatch, it may hold what is now refused
    if last.settings is not None and items:
        return from_ledger(last.settings, items, manifest_path=last.manifest, out=out,
                           options=options)
    if not Path(last.manifest).exists():
        raise UsageError(f"the manifest this run used, {last.manifest}, is gone, and this "
                         "ledger predates recorded requests; use nbbatch run MANIFEST --out "
                         f"{out} to continue")
    return resolve(Path(last.manifest), options, cwd=Path(last.cwd))


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
