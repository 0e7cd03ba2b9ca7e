"""Every provider nbbatch knows, as data: the one list the manifest, the CLI and the engine read.

A provider's code lives in the module its entry names, imported only when a manifest uses it
(this keeps `nbbatch --help` fast, and keeps the simulator out of the core: it registers here
by name like any other provider). Each such module offers

    create(config, api_key, transport) -> Provider   # api_key None for keyless providers
    check_options(options) -> dict                   # raises OptionError(key, message)

and a provider with a batch API names the module offering

    create_batch(config, api_key, transport) -> BatchClient
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from nbbatch import catalog

OPENAI_OPTIONS = ("quality", "background", "output_format", "moderation", "input_fidelity",
                  "organization", "project")
STABILITY_OPTIONS = ("negative_prompt", "style_preset", "seed", "output_format", "strength")


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    module: str  # where create() and check_options() live
    key_variables: tuple[str, ...] = ()  # looked up in order when api_key_env is not set
    default_model: str | None = None
    families: tuple[str, ...] = ()  # catalog model families it can serve
    timeout: float = 180.0  # seconds, total, for one request, unless the manifest says
    options: tuple[str, ...] = ()  # keys allowed under providers.<name> besides the common ones
    needs_key: bool = True  # False: works without api_key_env (ADC, in-process)
    billed: bool = True  # False: its images cost nothing (the simulator)
    batch_module: str | None = None  # where create_batch() lives, for batch mode
    batch_references: bool = False  # whether its batch API takes reference images
    no_batch: str = ""  # for providers without batch mode: what to use instead


_SPECS = (
    ProviderSpec("gemini", "nbbatch.providers.gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
                 "gemini-3-pro-image", ("gemini",), options=("response_modalities",),
                 batch_module="nbbatch.providers.gemini_batch", batch_references=True),
    ProviderSpec("vertex", "nbbatch.providers.vertex", (), "gemini-3-pro-image", ("gemini",),
                 options=("project", "location", "response_modalities"), needs_key=False,
                 no_batch="Vertex AI batch prediction reads from Cloud Storage or BigQuery, "
                          "which nbbatch does not use: send these prompts to provider gemini "
                          "(the same models with an AI Studio key), or use mode: online"),
    # GPT image models can take minutes at high quality; Gemini answers within 180 s.
    # OpenAI-style gateways at base_url may serve OpenRouter's vendor/model ids too.
    ProviderSpec("openai", "nbbatch.providers.openai", ("OPENAI_API_KEY",), "gpt-image-1",
                 ("openai", "openrouter"), timeout=300.0, options=OPENAI_OPTIONS,
                 batch_module="nbbatch.providers.openai_batch"),
    ProviderSpec("stability", "nbbatch.providers.stability", ("STABILITY_API_KEY",),
                 "stable-image-core", ("stability",), options=STABILITY_OPTIONS,
                 no_batch="Stability AI has no batch API; use mode: online"),
    ProviderSpec("openrouter", "nbbatch.providers.openrouter", ("OPENROUTER_API_KEY",),
                 "google/gemini-3-pro-image-preview", ("openrouter",),
                 options=("referer", "title"),
                 no_batch="OpenRouter has no batch API; use provider gemini or openai, or "
                          "mode: online"),
    ProviderSpec("simulator", "nbbatch.sim.inprocess", (), "gemini-3-pro-image", ("gemini",),
                 options=("latency", "faults", "daily_quota", "seed", "batch_duration"),
                 needs_key=False, billed=False, batch_module="nbbatch.sim.inprocess",
                 batch_references=True),
)
PROVIDERS: dict[str, ProviderSpec] = {spec.name: spec for spec in _SPECS}
NAMES = tuple(PROVIDERS)


def spec(name: str) -> ProviderSpec:
    """The entry for `name`; KeyError for an unknown provider (callers check NAMES first)."""
    return PROVIDERS[name]


def implementation(name: str) -> ModuleType:
    return importlib.import_module(PROVIDERS[name].module)


def batch_implementation(name: str) -> ModuleType:
    """The module with create_batch() for `name` (callers check batch_module first)."""
    module = PROVIDERS[name].batch_module
    assert module is not None, name
    return importlib.import_module(module)


def serves(provider: str, model: str) -> bool:
    """Whether `provider` can serve `model` (a model nbbatch does not know: assumed yes)."""
    family = catalog.family(model)
    return family is None or family in PROVIDERS[provider].families


def default_model(provider: str) -> str | None:
    return PROVIDERS[provider].default_model
