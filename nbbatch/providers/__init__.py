"""Providers: a name in the manifest -> a configured Provider, through the registry.

API keys come from the environment mapping the caller passes in (core code never reads
os.environ); a missing key is a usage error before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from nbbatch.errors import MissingKeyError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers import registry
from nbbatch.providers.base import (
    BatchClient,
    GeneratedImage,
    ImageRequest,
    Provider,
    ReferenceImage,
)

__all__ = [
    "BatchClient",
    "GeneratedImage",
    "ImageRequest",
    "Provider",
    "ReferenceImage",
    "create_batch_client",
    "create_provider",
    "key_variables",
]


def key_variables(config: ProviderConfig) -> tuple[str, ...]:
    if config.api_key_env:
        return (config.api_key_env,)
    return registry.spec(config.name).key_variables


def resolve_api_key(config: ProviderConfig, env: Mapping[str, str]) -> str | None:
    """The key for `config`, or None for a provider that needs none (as configured)."""
    names = key_variables(config)
    if not names:
        return None
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip()
    wanted = " (or ".join(names) + ")" * (len(names) - 1)
    raise MissingKeyError(f"No API key for provider '{config.name}': set {wanted} in the "
                          "environment.")


def create_provider(
    config: ProviderConfig,
    env: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    if config.name not in registry.PROVIDERS:
        raise UsageError(f"unknown provider {config.name!r}; known providers: "
                         f"{', '.join(registry.NAMES)}")
    module = registry.implementation(config.name)
    provider: Provider = module.create(config, resolve_api_key(config, env), transport)
    return provider


def create_batch_client(
    config: ProviderConfig,
    env: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BatchClient:
    """The batch API client of `config`'s provider (the manifest checked it has one)."""
    if config.name not in registry.PROVIDERS or registry.spec(config.name).batch_module is None:
        raise UsageError(f"provider {config.name!r} has no batch mode")
    module = registry.batch_implementation(config.name)
    client: BatchClient = module.create_batch(config, resolve_api_key(config, env), transport)
    return client
