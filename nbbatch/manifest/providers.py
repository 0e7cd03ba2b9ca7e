"""The `providers` section (each provider's common settings and its own options) and the
`failover` order that names them.

Common keys (api_key_env, base_url, timeout, model) are checked here against
model.ProviderConfig; the keys a provider adds are those its registry entry lists, checked by
the provider's own `check_options` (so each option is described once, where it is used).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from nbbatch import catalog
from nbbatch.errors import OptionError
from nbbatch.manifest.entries import EntryError, check_entry
from nbbatch.manifest.sections import SectionError, build_section, section_keys
from nbbatch.model import FailoverConfig, ProviderConfig
from nbbatch.providers import registry
from nbbatch.redaction import looks_like_a_key
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


def check_failover(raw: Any) -> FailoverConfig | None:
    """The `failover` section: an order of known providers, each named once."""
    if raw is None:
        return None
    failover = build_section(FailoverConfig, raw, ("failover",))
    for j, name in enumerate(failover.order):
        if name not in registry.PROVIDERS:
            raise SectionError(("failover", "order", j), f"unknown provider {shown(name)}; "
                               f"known providers: {', '.join(registry.NAMES)}")
        if name in failover.order[:j]:
            raise SectionError(("failover", "order", j), f"{name!r} is listed twice")
    return failover


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


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot serve as a base URL (requests are sent to it plus a path), or None."""
    if not url.startswith(("https://", "http://")):
        return "must start with https:// (or http://)"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when it is not a number from 0 to 65535
        # As httpx will read it when sending: it checks IPv4 octets, and decodes an IDNA
        # host ("xn--…") only when asked for it. InvalidURL is no ValueError; IDNAError is.
        _ = httpx.URL(url).join("x").host
    except (ValueError, httpx.InvalidURL) as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "names no host (write it as https://host or http://host:port)"
    if port == 0:
        return "port 0 cannot be connected to"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password: keys go in api_key_env"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query (?) or fragment (#): paths are appended to it"
    return None


def _check_common(config: ProviderConfig, at: tuple[Any, ...]) -> None:
    name = config.api_key_env
    if name is not None and (looks_like_a_key(name) or not _ENV_NAME_RE.fullmatch(name)):
        # Never echoed: what is written here may be the key itself.
        what = "looks like an API key itself; it " if looks_like_a_key(name) else ""
        example = (registry.spec(config.name).key_variables or ("MY_API_KEY",))[0]
        raise SectionError((*at, "api_key_env"), f"{what}must be the NAME of the environment "
                           "variable that holds the key (letters, digits, _), never the key "
                           f"itself: export {example}=... and write api_key_env: {example}")
    if config.base_url is not None:
        problem = base_url_problem(config.base_url)
        if problem:
            raise SectionError((*at, "base_url"), f"{problem}, got {shown(config.base_url)}")
    if config.model is not None:
        try:
            check_entry({"model": config.model}, ("model",))
        except EntryError as e:
            raise SectionError((*at, "model"), e.message) from None
        if not registry.serves(config.name, config.model):
            raise SectionError((*at, "model"), f"{config.model!r} is a "
                               f"{catalog.family(config.model)} model, which provider "
                               f"{config.name!r} cannot serve")
