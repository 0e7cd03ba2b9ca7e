"""What both batch APIs share: requests written as JSONL to a temporary file (uploaded from
there, never held whole in memory), result lines read defensively, counts read leniently."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from typing import IO, Any

from nbbatch.providers.answer_json import parse_json

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def write_jsonl(docs: Iterable[Any]) -> tuple[IO[bytes], int]:
    """The documents as JSON lines in an anonymous temporary file, and its size in bytes."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it once uploaded
    size = 0
    for doc in docs:
        line = _ENCODER.encode(doc).encode() + b"\n"
        file.write(line)
        size += len(line)
    file.flush()
    return file, size


def encoded_size(doc: Any) -> int:
    return len(_ENCODER.encode(doc).encode())


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A result line as a JSON object, or None (not JSON, truncated, not an object, or more
    values than an answer holds: answer_json.py)."""
    doc = parse_json(line)
    return doc if isinstance(doc, dict) else None


def count(value: Any) -> int:
    """A request count: an int, or an int64 serialized as a string; missing means 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def checked_name(name: Any, prefix: str, what: str) -> str:
    """A resource name from the server, before it goes into a URL: `prefix` then a plain id,
    nothing that could climb out of the path or add a query."""
    if isinstance(name, str) and re.fullmatch(rf"{re.escape(prefix)}[A-Za-z0-9._-]{{1,200}}", name):
        return name
    raise ValueError(f"the provider answered with an unusable {what} name {str(name)[:80]!r}")
