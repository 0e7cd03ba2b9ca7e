"""An answer's JSON, parsed only when it cannot build more than an answer holds.

The byte cap alone does not bound memory: 57 MB of `{},` is 1.8 GB of Python dicts. An image
answer holds dozens of values, so one that could hold more than MAX_JSON_VALUES is refused
unparsed, after counting a few kinds of byte in one pass. Parsing is orjson's (several times
faster on the long strings of base64 images); what it refuses that json accepts (integers
past 64 bits, NaN) is read by json as before.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

MAX_JSON_VALUES = 100_000  # objects, arrays and their members an answer may hold
# The deepest nesting either parser reads (orjson stops at 1024 levels, json at the
# interpreter's recursion limit).
_DEEPEST = max(1024, sys.getrecursionlimit())


def too_many_values(body: bytes) -> bool:
    """Whether `body` could hold more than MAX_JSON_VALUES values: every value but the first
    follows a comma or opens a container, and counting those bytes (one pass in C) costs a
    fraction of parsing."""
    if (body.count(b",") + 1) * (_DEEPEST + 1) <= MAX_JSON_VALUES:
        # Every value is the first in its container or follows a comma, and a chain of
        # first members is at most as deep as parsing goes: few commas, few values (an
        # image answer: a few dozen commas around one long string).
        return False
    return len(body) - len(body.translate(None, b",{[")) > MAX_JSON_VALUES


def parse_json(body: bytes) -> Any:
    """The body as JSON, or None: not JSON, truncated, bad UTF-8, absurdly nested, or with
    more values than an answer can have (refused unparsed)."""
    if too_many_values(body):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def unparsed(body: bytes) -> str:
    """Why a 2xx body that looks like JSON was not read."""
    if too_many_values(body):
        return f"the response holds more than {MAX_JSON_VALUES} JSON values (refused unparsed)"
    return "truncated or invalid JSON"
