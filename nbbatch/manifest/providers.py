"""The `providers` section: each provider's common settings and its own options.

Common keys (api_key_env, base_url, timeout, model) are checked here against
model.ProviderConfig; the keys a provider adds are those its registry entry lists, checked by
the provider's own `check_options` (so each option is described once, where it is used).
"""

from __future__ import annotations

import re
from typing import Any

from nbbatch import catalog
from nbbatch.errors import OptionError
from nbbatch.manifest.entries import EntryError, check_entry
from nbbatch.manifest.sections import SectionError, build_section, section_keys
from nbbatch.model import ProviderConfig
from nbbatch.providers import registry
from nbbatch.text import kind_of, shown

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMON = tuple(section_keys(ProviderConfig, exclude=("name", "options")))


def check_providers(raw: Any) -> dict[str, ProviderConfig]:
    """{name: ProviderConfig} for the `providers` section. Raises SectionError."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SectionError(("providers",), f"must be a mapping of provider names "
                                           f"({', '.join(registry.NAMES)}), got {kind_of(raw)}")
    out = {}
    for name, section in raw.items():
        if name not in registry.PROVIDERS:
            raise SectionError(("providers", name), f"unknown provider {name!r}; known providers:"
                                                    f" {', '.join(registry.NAMES)}")
        out[name] = _provider(name, section or {})
    return out


def _provider(name: str, raw: Any) -> ProviderConfig:
    at = ("providers", name)
    spec = registry.spec(name)
    if isinstance(raw, dict):
        allowed = (*_COMMON, *spec.options)
        for key in raw:
            if key not in allowed:
                owners = [n for n, s in registry.PROVIDERS.items() if key in s.options]
                hint = f" ({key!r} is an option of {' and '.join(owners)} only)" if owners else ""
                raise SectionError((*at, key), f"unknown key {key!r}; allowed keys here: "
                                               f"{', '.join(allowed)}{hint}")
        options = {k: v for k, v in raw.items() if k in spec.options and v is not None}
        raw = {k: v for k, v in raw.items() if k in _COMMON}
        raw.setdefault("timeout", spec.timeout)
    else:
        options = {}
    config = build_section(ProviderConfig, raw, at, exclude=("name", "options"), name=name)
    _check_common(config, at)
    try:
        options = registry.implementation(name).check_options(options)
    except OptionError as exc:
        raise SectionError((*at, exc.key), exc.reason) from None
    return ProviderConfig(name, config.api_key_env, config.base_url, config.timeout,
                          config.model, options)


def _check_common(config: ProviderConfig, at: tuple[Any, ...]) -> None:
    if config.api_key_env is not None and not _ENV_NAME_RE.fullmatch(config.api_key_env):
        raise SectionError((*at, "api_key_env"), "must be the NAME of the environment variable "
                           "that holds the key (letters, digits, _), never the key itself")
    if config.base_url is not None and not config.base_url.startswith(("https://", "http://")):
        raise SectionError((*at, "base_url"), "must start with https:// (or http://), got "
                                              f"{shown(config.base_url)}")
    if config.model is not None:
        try:
            check_entry({"model": config.model}, ("model",))
        except EntryError as e:
            raise SectionError((*at, "model"), e.message) from None
        if not registry.serves(config.name, config.model):
            raise SectionError((*at, "model"), f"{config.model!r} is a "
                               f"{catalog.family(config.model)} model, which provider "
                               f"{config.name!r} cannot serve")
