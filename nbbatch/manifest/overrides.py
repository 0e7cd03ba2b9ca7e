"""Command-line flags laid over a loaded manifest (flags beat the manifest)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from nbbatch import catalog
from nbbatch.errors import UsageError
from nbbatch.model import MAX_CONCURRENCY, Interval, Item, Manifest, ProviderConfig
from nbbatch.providers import registry


def apply_overrides(
    manifest: Manifest,
    *,
    provider: str | None = None,
    interval: Interval | None = None,
    concurrency: int | None = None,
    out: Path | None = None,
) -> Manifest:
    """The manifest with command-line flags applied (flags beat the manifest). UsageError
    when a flag cannot apply, e.g. a provider with no model to fall back on."""
    changes: dict[str, Any] = {}
    if provider is not None:
        changes["providers"], changes["items"] = _switch_provider(manifest, provider)
    if interval is not None or concurrency is not None:
        if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
            raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
        if concurrency is not None and concurrency > MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be at most {MAX_CONCURRENCY}, got {concurrency}")
        changes["pacing"] = replace(
            manifest.pacing,
            interval=manifest.pacing.interval if interval is None else interval,
            concurrency=manifest.pacing.concurrency if concurrency is None else concurrency,
        )
    if out is not None:
        changes["output"] = Path(out).resolve()
    return replace(manifest, **changes)


def _switch_provider(
    manifest: Manifest, provider: str
) -> tuple[dict[str, ProviderConfig], tuple[Item, ...]]:
    if provider not in registry.PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; known providers: "
                         f"{', '.join(registry.NAMES)}")
    providers = dict(manifest.providers)
    cfg = providers.setdefault(provider, manifest.provider(provider))
    fallback = cfg.model or registry.default_model(provider)
    # Models the manifest configures for another provider belong to it, even unknown ones.
    others = {c.model for n, c in providers.items() if c.model and n != provider} - {cfg.model}
    items = []
    for item in manifest.items:
        model = item.model
        if not registry.serves(provider, model) or model in others:
            if fallback is None:
                raise UsageError(f"--provider {provider}: {item.id!r} uses {model}, which "
                                 f"{provider} cannot serve, and no {provider} model is known; "
                                 f"set providers.{provider}.model in the manifest")
            model = fallback
            info = catalog.lookup(model)
            if info is not None and (
                item.aspect_ratio not in (None, *info.aspect_ratios)
                or item.image_size not in (None, *info.image_sizes)
            ):
                raise UsageError(f"--provider {provider}: {item.id!r} asks for "
                                 f"{item.aspect_ratio or '-'} / {item.image_size or '-'}, which "
                                 f"{model} does not support")
        items.append(item if (item.provider, item.model) == (provider, model)
                     else replace(item, provider=provider, model=model))
    return providers, tuple(items)
