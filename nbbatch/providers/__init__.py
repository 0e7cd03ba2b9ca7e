"""Providers: a name in the manifest -> a configured Provider, through the registry.

API keys come from the environment mapping the caller passes in (core code never reads
os.environ); a missing or malformed key is a usage error before anything is sent (keys.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from nbbatch.errors import UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers import registry
from nbbatch.providers.base import (
    BatchClient,
    GeneratedImage,
    ImageRequest,
    Provider,
    ReferenceImage,
)
from nbbatch.providers.keys import key_variables, resolve_api_key

__all__ = [
    "BatchClient",
    "GeneratedImage",
    "ImageRequest",
    "Provider",
    "ReferenceImage",
    "create_batch_client",
    "create_provider",
    "key_variables",
    "resolve_api_key",
]


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
