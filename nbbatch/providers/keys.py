"""API keys from the environment: found, checked, and never shown.

A key goes into an HTTP header, so it must be printable ASCII with no spaces. A value that is
not (a second line from `$(cat keyfile)`, a smart quote or a non-breaking space pasted with
it) is refused before anything is sent, and the refusal names the variable and what is wrong
with it — never the value. Only one trailing line break is forgiven, as files end with one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from nbbatch.errors import MissingKeyError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers import registry
from nbbatch.redaction import looks_like_a_key

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what an HTTP header value may carry unquoted


def key_variables(config: ProviderConfig) -> tuple[str, ...]:
    if config.api_key_env:
        return (config.api_key_env,)
    return registry.spec(config.name).key_variables


def resolve_api_key(config: ProviderConfig, env: Mapping[str, str]) -> str | None:
    """The key for `config`, or None for a provider that needs none (as configured).
    UsageError when no variable is set, or the one that is holds something that is no key."""
    names = key_variables(config)
    if not names:
        return None
    for name in names:
        value = _strip_line_end(env.get(name, ""))
        if value.strip():
            return checked_key(name, value)
    shown_names = [name if not looks_like_a_key(name) else "the variable" for name in names]
    wanted = " (or ".join(shown_names) + ")" * (len(names) - 1)
    raise MissingKeyError(f"No API key for provider '{config.name}': set {wanted} in the "
                          "environment.")


def checked_key(name: str, value: str) -> str:
    """`value` if it can be sent as a key; UsageError describing (not showing) it otherwise."""
    if _HEADER_SAFE.fullmatch(value):
        return value
    position, char = next((i, c) for i, c in enumerate(value) if not _HEADER_SAFE.match(c))
    raise UsageError(
        f"{name} cannot be an API key: it holds {_describe(char)} at character {position + 1} "
        f"of {len(value)}. A key is one line of printable ASCII; set {name} to the key alone "
        "(for a key file: export NAME=\"$(head -n 1 keyfile)\")."
    )


def _strip_line_end(value: str) -> str:
    for ending in ("\r\n", "\n"):
        if value.endswith(ending):
            return value[: -len(ending)]
    return value


def _describe(char: str) -> str:
    if char in "\r\n":
        return "a line break (the value has more than one line)"
    if char == " ":
        return "a space"
    if char == "\t":
        return "a tab"
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"a control character (U+{ord(char):04X})"
    name = unicodedata.name(char, "") if not 0xD800 <= ord(char) <= 0xDFFF else ""
    what = f"U+{ord(char):04X} {name}".rstrip()
    return f"a non-ASCII character ({what}; pasted with the key?)"
