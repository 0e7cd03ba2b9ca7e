"""The engine's entry points, free of any terminal: run, plan, status.

run_batch takes the output folder's lock, opens the ledger, finishes saves a crash
interrupted, brings the ledger in line with the manifest, and runs the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from nbbatch import catalog
from nbbatch.errors import ExitCode, UsageError
from nbbatch.failover import candidates
from nbbatch.ledger import Counts, ImageRow, Ledger, PlannedImage
from nbbatch.manifest import Manifest, ProviderConfig
from nbbatch.providers import create_provider
from nbbatch.providers.base import Provider
from nbbatch.runner import BatchRunner, Budget, EventSink, RunSummary
from nbbatch.settings import Settings
from nbbatch.storage import FolderLock, ImageStore

LEDGER_FILE = "ledger.db"
TransportFactory = Callable[[str], httpx.AsyncBaseTransport | None]


def planned_images(manifest: Manifest) -> Iterator[PlannedImage]:
    position = 0
    for item in manifest.items:
        estimate = catalog.price(item.model, item.image_size, item.provider)
        for index in range(1, item.count + 1):
            yield PlannedImage(item.id, index, item.fingerprint, position, estimate)
            position += 1


def provider_config(manifest: Manifest, name: str) -> ProviderConfig:
    return manifest.providers.get(name) or ProviderConfig(name=name)


def build_providers(
    manifest: Manifest, names: set[str], env: Mapping[str, str],
    transport_factory: TransportFactory | None = None,
) -> dict[str, Provider]:
    """Every provider the pending images need; a missing key fails here, before any request."""
    providers: dict[str, Provider] = {}
    for name in sorted(names):
        transport = transport_factory(name) if transport_factory else None
        providers[name] = create_provider(provider_config(manifest, name), env, transport=transport)
    return providers


def _recover(ledger: Ledger, store: ImageStore) -> None:
    for intent in ledger.saves_in_progress():
        key = (intent.id, intent.index)
        if store.recover(intent.file, intent.sha256):
            ledger.mark_done(key)
        else:
            ledger.clear_save(key)
    store.remove_temp_files()


def run_batch(
    settings: Settings,
    *,
    env: Mapping[str, str],
    cwd: Path,
    on_event: EventSink | None = None,
    transport_factory: TransportFactory | None = None,
    handle_signals: bool = True,
) -> RunSummary:
    manifest, out, options = settings.manifest, settings.out, settings.options
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    with FolderLock(out):
        store = ImageStore(out)
        store.prepare()
        with Ledger.open(out / LEDGER_FILE) as ledger:
            _recover(ledger, store)
            ledger.sync(planned_images(manifest))
            if options.retry_failed:
                ledger.retry_failed()
            pending = ledger.pending()
            items = {item.id: item for item in manifest.items}
            needed = {name for row in pending if row.id in items
                      for name in candidates(items[row.id], manifest.failover)}
            providers = build_providers(manifest, needed, env, transport_factory)
            run_id = ledger.start_run(manifest=str(manifest.path), options=options.to_record(),
                                      cwd=str(cwd), pid=os.getpid())
            budget = Budget(options.max_images, options.max_cost, options.max_duration)
            summary = asyncio.run(_drive(
                manifest, ledger, store, providers, budget, on_event, pending, handle_signals))
            ledger.finish_run(run_id, int(summary.exit_code))
    return summary


async def _drive(manifest, ledger, store, providers, budget, on_event, pending,
                 handle_signals) -> RunSummary:
    runner = BatchRunner(manifest, ledger, store, providers, budget=budget, on_event=on_event)
    if handle_signals:
        loop = asyncio.get_running_loop()
        for signum, code in ((signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM)):
            loop.add_signal_handler(signum, _on_signal, runner, code)
    return await runner.run(pending)


def _on_signal(runner: BatchRunner, code: ExitCode) -> None:
    if runner.interrupted_by:
        # Second signal: stop at once. Every ledger write is its own transaction, so
        # nothing is left half-done.
        os._exit(int(code))
    runner.interrupt(code)


# -- plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    items: int
    images: int
    done: int
    failed: int
    pending: int
    by_provider: dict[str, int]  # pending images per provider
    estimated_seconds: float
    estimated_cost: float
    warnings: tuple[str, ...]


def plan_batch(settings: Settings) -> Plan:
    """What a run would do, from the manifest and the ledger if one exists. Sends nothing."""
    manifest = settings.manifest
    known: dict[tuple[str, int], tuple[str, str]] = {}
    ledger_path = settings.out / LEDGER_FILE
    if ledger_path.exists():
        with Ledger.open(ledger_path) as ledger:
            known = ledger.states()
    keep_failed = not settings.options.retry_failed
    done = failed = 0
    per_provider: Counter[str] = Counter()
    cost = 0.0
    for item in manifest.items:
        fingerprint = item.fingerprint
        for index in range(1, item.count + 1):
            state = known.get((item.id, index))
            if state == (fingerprint, "done"):
                done += 1
            elif state == (fingerprint, "failed") and keep_failed:
                failed += 1
            else:
                per_provider[item.provider] += 1
                cost += catalog.price(item.model, item.image_size, item.provider)
    interval = manifest.pacing.interval.mean
    # Start-to-start pacing per provider: the busiest provider sets the pace.
    seconds = max(per_provider.values(), default=0) * interval
    warnings = tuple(model_warnings(manifest))
    return Plan(
        items=len(manifest.items), images=manifest.image_count, done=done, failed=failed,
        pending=sum(per_provider.values()), by_provider=dict(per_provider),
        estimated_seconds=seconds, estimated_cost=cost, warnings=warnings,
    )


def model_warnings(manifest: Manifest, today: datetime.date | None = None) -> Iterator[str]:
    """Models past (or near) their announced shutdown: requests to them will fail."""
    today = today or datetime.date.today()
    backups = {config.model for config in manifest.providers.values() if config.model}
    for model in sorted({item.model for item in manifest.items} | backups):
        info = catalog.lookup(model)
        if not (info and info.shutdown):
            continue
        if info.shutdown <= today:
            yield (f"model {model} was shut down on {info.shutdown:%Y-%m-%d} (reported); "
                   "requests to it will likely fail - choose a current model")
        elif (info.shutdown - today).days <= 30:
            yield f"model {model} shuts down on {info.shutdown:%Y-%m-%d}; plan a replacement"


# -- status -------------------------------------------------------------------------------


def open_ledger_for_reading(out: Path) -> Ledger:
    path = out / LEDGER_FILE
    if not path.exists():
        raise UsageError(f"no nbbatch run in {out}: {path} does not exist")
    return Ledger.open(path)


def write_status_json(ledger: Ledger, stream: TextIO, *, out: str, manifest: str | None) -> None:
    """The `status --json` document (SPEC §7), streamed one item per line: 100,000 images
    need neither the whole document in memory nor the slow indenting encoder."""
    counts, cost = ledger.counts(), ledger.cost_summary()
    head = {
        "out": out,
        "manifest": manifest,
        "counts": _counts_json(counts),
        "cost_usd": round(cost.spent_usd, 6),
        "possibly_spent_usd": round(cost.possibly_spent_usd, 6),
        "remaining_estimate_usd": round(cost.remaining_usd, 6),
        "by_provider": {name: _counts_json(c)
                        for name, c in ledger.counts_by_provider().items() if name},
    }
    stream.write("{\n")
    for key, value in head.items():
        stream.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
    stream.write('  "items": [')
    separator = "\n    "
    for row in ledger.rows():
        stream.write(separator + json.dumps(_item_json(row)))
        separator = ",\n    "
    stream.write("\n  ]\n}\n")


def _counts_json(counts: Counts) -> dict:
    return {"total": counts.total, "done": counts.done, "failed": counts.failed,
            "pending": counts.pending}


def _item_json(row: ImageRow) -> dict:
    error = {"kind": row.error_kind, "message": row.error_message} if row.error_kind else None
    return {
        "id": row.id, "index": row.index, "status": row.status, "provider": row.provider,
        "model": row.model, "attempts": row.attempts,
        "file": row.file if row.status == "done" else None,
        "sha256": row.sha256 if row.status == "done" else None,
        "error": error if row.status != "done" else None,
    }
