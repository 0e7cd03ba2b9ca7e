"""`nbbatch plan`: what a run would do, from the manifest and the ledger, and (unless asked
not to) the run's pre-flight checks. Sends no generation request."""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from nbbatch import catalog
from nbbatch.engine.failover import routes_of
from nbbatch.engine.planned import planned_digest
from nbbatch.engine.preflight import Check, blocking, needs_of, run_checks
from nbbatch.engine.pricing import Pricing
from nbbatch.engine.shapes import Shapes
from nbbatch.errors import FatalError, UsageError
from nbbatch.model import Item, Manifest
from nbbatch.providers import create_provider, registry
from nbbatch.settings import Settings
from nbbatch.store import find_ledger, open_for_reading
from nbbatch.store.files import RecordedFiles


@dataclass(frozen=True)
class Plan:
    items: int
    images: int
    done: int
    failed: int
    pending: int
    missing: int  # done images whose file is gone: counted in pending
    by_provider: dict[str, int]  # pending images per provider
    estimated_seconds: float
    estimated_cost: float  # at the price of the manifest's mode
    warnings: tuple[str, ...]
    mode: str = "online"
    online_cost: float = 0.0  # what the same images cost as online requests
    # pending items a backup would make in another shape: how many, and the first few said
    shape_changes: int = 0
    shape_examples: tuple[str, ...] = ()
    same_shape: bool = False  # failover.same_shape: those items wait for their primary


SHAPE_EXAMPLES = 10


def plan_batch(settings: Settings) -> Plan:
    manifest = settings.manifest
    known: dict[tuple[str, int], tuple[str, str]] = {}
    missing: set[tuple[str, int]] = set()  # done, but the file is gone: made again
    synced = False  # the ledger holds exactly the planned images: read only unfinished ones
    if find_ledger(settings.out) is not None:
        with open_for_reading(settings.out) as ledger:
            synced = ledger.synced_as(planned_digest(manifest))
            known = ledger.states(unfinished_only=synced)
            missing = {key for key, _ in RecordedFiles(settings.out).problems(ledger.done_files())}
    keep_failed = not settings.options.retry_failed
    pricing = Pricing(manifest.providers)
    done = failed = 0
    per_provider: Counter[str] = Counter()
    cost = online = 0.0
    batch = manifest.mode == "batch"
    shapes = Shapes(manifest)
    changes, examples = 0, list[str]()
    for item in manifest.items:
        fingerprint = item.fingerprint
        legacy = item.legacy_fingerprint
        for index in range(1, item.count + 1):
            state = known.get((item.id, index)) or ((fingerprint, "done") if synced else None)
            if legacy is not None:  # a ledger from before prompts were normalised: as a run
                old = state or known.get((item.legacy_id or item.id, index))  # would adopt it
                state = (fingerprint, old[1]) if old and old[0] == legacy else state
            if state == (fingerprint, "done") and (item.id, index) not in missing:
                done += 1
            elif state == (fingerprint, "failed") and keep_failed:
                failed += 1
            else:
                per_provider[item.provider] += 1
                cost += pricing.estimate(item, batch=batch)
                online += pricing.estimate(item)
                if index == 1 and (note := _backup_change(item, manifest, shapes)):
                    changes += 1
                    if len(examples) < SHAPE_EXAMPLES:
                        examples.append(f"{item.id}: {note}")
    interval = manifest.pacing.interval.mean
    # Start-to-start pacing per provider: the busiest provider sets the pace.
    seconds = max(per_provider.values(), default=0) * interval
    return Plan(
        items=len(manifest.items), images=manifest.image_count, done=done, failed=failed,
        pending=sum(per_provider.values()), missing=len(missing), by_provider=dict(per_provider),
        estimated_seconds=seconds, estimated_cost=cost,
        warnings=tuple(model_warnings(manifest)), mode=manifest.mode, online_cost=online,
        shape_changes=changes, shape_examples=tuple(examples),
        same_shape=bool(manifest.failover and manifest.failover.same_shape),
    )


@dataclass(frozen=True)
class PlanChecks:
    checks: tuple[Check, ...]  # what the providers' metadata routes said
    skipped: tuple[str, ...]  # providers not checked, and why (no key set)
    stop: FatalError | None  # what would stop a run before its first request


def check_providers(manifest: Manifest, env: Mapping[str, str]) -> PlanChecks:
    """The run's pre-flight, for `plan`: free metadata requests, no generation request."""
    shapes = Shapes(manifest)
    routes = routes_of(manifest.items, manifest.failover, shapes)
    names = {name for route in routes.values() for name in route}
    providers, skipped = {}, []
    for name in sorted(names):
        try:
            providers[name] = create_provider(manifest.provider(name), env)
        except UsageError as exc:  # no key for it here: a run would say so, plan only notes it
            skipped.append(f"{name}: {exc.message}")
    backups = {n: manifest.provider(n).model or registry.default_model(n) for n in providers}
    needs = needs_of(manifest.items, routes, backups)

    async def check_all() -> list[Check]:
        try:
            return await run_checks(providers, needs)
        finally:
            for provider in providers.values():
                await provider.aclose()

    checks = asyncio.run(check_all()) if providers else []
    return PlanChecks(tuple(checks), tuple(skipped), blocking(checks))


def _backup_change(item: Item, manifest: Manifest, shapes: Shapes) -> str | None:
    """How the first backup that would change `item`'s shape changes it, if one would."""
    failover = manifest.failover
    if failover is None or item.provider not in failover.order:
        return None
    for name in failover.order:
        if name != item.provider and (note := shapes.change(item, name)):
            return note
    return None


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
