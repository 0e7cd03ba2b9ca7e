"""An answer's JSON, parsed only when it cannot build more than an answer holds.

The byte cap alone does not bound memory: 57 MB of `{},` is 1.8 GB of Python dicts. An image
answer holds dozens of values, so one that could hold more than MAX_JSON_VALUES is refused
unparsed, after counting a few kinds of byte in one pass.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_VALUES = 100_000  # objects, arrays and their members an answer may hold


def too_many_values(body: bytes) -> bool:
    """Whether `body` could hold more than MAX_JSON_VALUES values: every value but the first
    follows a comma or opens a container, and counting those bytes (one pass in C) costs a
    fraction of parsing."""
    return len(body) - len(body.translate(None, b",{[")) > MAX_JSON_VALUES


def parse_json(body: bytes) -> Any:
    """The body as JSON, or None: not JSON, truncated, bad UTF-8, absurdly nested, or with
    more values than an answer can have (refused unparsed)."""
    if too_many_values(body):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def unparsed(body: bytes) -> str:
    """Why a 2xx body that looks like JSON was not read."""
    if too_many_values(body):
        return f"the response holds more than {MAX_JSON_VALUES} JSON values (refused unparsed)"
    return "truncated or invalid JSON"
