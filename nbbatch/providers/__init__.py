"""Provider registry: a provider name in the manifest -> a configured Provider.

API keys come from the environment mapping the caller passes in (core code never reads
os.environ); a missing key is a usage error before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from nbbatch.errors import UsageError
from nbbatch.manifest import ProviderConfig
from nbbatch.providers.base import GeneratedImage, ImageRequest, Provider, ReferenceImage

__all__ = [
    "KNOWN_PROVIDERS",
    "GeneratedImage",
    "ImageRequest",
    "Provider",
    "ReferenceImage",
    "create_provider",
    "key_variables",
]

KNOWN_PROVIDERS = ("gemini", "vertex", "openai", "simulator")

_DEFAULT_KEY_VARIABLES = {
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "openai": ("OPENAI_API_KEY",),
}


def key_variables(config: ProviderConfig) -> tuple[str, ...]:
    if config.api_key_env:
        return (config.api_key_env,)
    return _DEFAULT_KEY_VARIABLES.get(config.name, ())


def resolve_api_key(config: ProviderConfig, env: Mapping[str, str]) -> str:
    names = key_variables(config)
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip()
    wanted = " (or ".join(names) + ")" * (len(names) - 1)
    raise UsageError(
        f"No API key for provider '{config.name}': set {wanted} in the environment. "
        "To try nbbatch offline without a key, add --provider simulator."
    )


def create_provider(
    config: ProviderConfig,
    env: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    from nbbatch.providers.gemini import GeminiProvider

    if config.name == "gemini":
        return GeminiProvider(config, resolve_api_key(config, env), transport=transport)
    if config.name == "openai":
        from nbbatch.providers.openai import OpenAIProvider

        return OpenAIProvider(config, resolve_api_key(config, env), transport=transport)
    if config.name == "vertex":
        from nbbatch.providers.vertex import VertexProvider, adc_token_source

        if config.api_key_env:  # express mode: an API key instead of credentials
            return VertexProvider(config, api_key=resolve_api_key(config, env),
                                  transport=transport)
        return VertexProvider(config, token_source=adc_token_source(), transport=transport)
    if config.name == "simulator":
        from nbbatch.providers.simulator import simulator_options, simulator_transport

        sim_config = ProviderConfig(
            name="simulator",
            base_url="http://simulator.invalid",
            timeout=config.timeout,
            options=config.options,
        )
        return GeminiProvider(
            sim_config,
            "simulator-key",
            transport=transport or simulator_transport(simulator_options(config.options)),
        )
    raise UsageError(
        f"Provider '{config.name}' is not available yet; use one of: {', '.join(KNOWN_PROVIDERS)}"
    )
