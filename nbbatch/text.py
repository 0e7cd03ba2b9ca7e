"""How values from outside (a manifest, a server, a path) are quoted in messages and shown:
short, typed, and inert on a terminal."""

from __future__ import annotations

import re
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


LONGEST_SHOWN = 100 * 86400.0  # seconds; past this (or infinite) a duration is "over 100 days"


def clock_parts(seconds: float) -> tuple[int, int, int] | None:
    """(hours, minutes, seconds) of a duration, or None when it is too long to be worth
    writing out (a pacing interval of 1e300 s would give 300 digits, infinity a crash)."""
    if not seconds < LONGEST_SHOWN:  # NaN too
        return None
    minutes, secs = divmod(int(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return hours, minutes, secs


def one_of(choices: tuple[str, ...]) -> str:
    """('a', 'b', 'c') -> "'a', 'b' or 'c'"."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# Characters that would act on a terminal instead of showing: C0 controls (ESC starts colour,
# cursor and OSC title sequences; CR and BS overwrite a line), DEL, C1 controls (CSI, OSC in
# one byte), line separators, and the bidi controls that reorder what a line seems to say.
_ACTIVE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` from outside (a server, a manifest, a path) made safe to show on one line:
    every character that a terminal would act on is written as its escape, `\\x1b` or
    `\\u202e`, so it is visible and does nothing."""
    if text.isprintable():  # the usual case, checked in C: nothing in it is active
        return text
    return _ACTIVE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
