"""How values from outside (a manifest, a server) are quoted in messages: short and typed."""

from __future__ import annotations

from typing import Any


def kind_of(value: Any) -> str:
    """How a YAML/JSON value reads to a user: 'text', 'an integer', 'a list'…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {
        str: "text", int: "an integer", float: "a number", list: "a list", dict: "a mapping",
    }.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """repr() for messages, cut short: a value may be a whole document."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_path(loc: tuple[Any, ...]) -> str:
    """('prompts', 2, 'count') -> 'prompts[2].count'."""
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def one_of(choices: tuple[str, ...]) -> str:
    """('a', 'b', 'c') -> "'a', 'b' or 'c'"."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
