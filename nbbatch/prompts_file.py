"""Prompts from a CSV or JSONL file, for batches too large to write inline.

Each row becomes a raw entry with the same fields as a prompt entry in the manifest, and
manifest.py checks it exactly like one. This module only reads rows, with their line numbers,
and turns CSV cells into typed values (count -> int, images -> list).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nbbatch.errors import ManifestError
from nbbatch.manifest_schema import ENTRY_FIELDS, kind_of

SUFFIXES = (".csv", ".jsonl", ".ndjson")
_IMAGE_SEPARATORS = re.compile(r"[;|]")


def read_rows(path: Path, display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line, raw entry) for each prompt in the file; `display` names it in errors."""
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, display)
    return _jsonl_rows(path, display)


def _csv_rows(path: Path, display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    def fail(message: str, line: int | None, field: str | None = None) -> ManifestError:
        return ManifestError(message, file=display, line=line, field=field)

    allowed = ", ".join(ENTRY_FIELDS)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = [name.strip() for name in next(reader, [])]
            if not any(header):
                raise fail(f"the first row must be a header naming the columns ({allowed})", 1)
            for name in header:
                if name not in ENTRY_FIELDS:
                    what = f"unknown column {name!r}" if name else "a column has no name"
                    raise fail(f"{what} in the header; allowed columns: {allowed}", 1)
                if header.count(name) > 1:
                    raise fail(f"column {name!r} appears twice in the header", 1)
            if "prompt" not in header:
                raise fail(f"the header has no 'prompt' column (columns: {allowed})", 1)
            width = len(header)
            prev = reader.line_num
            for row in reader:
                line, prev = prev + 1, reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    raise fail(
                        f"this row has {len(row)} cells but the header has {width} columns "
                        "(quote cells that contain a comma)", line)
                entry = {name: cell for name, cell in zip(header, map(str.strip, row)) if cell}
                if "count" in entry:
                    entry["count"] = _count_cell(entry["count"], line, fail)
                if "images" in entry:
                    entry["images"] = [
                        p.strip() for p in _IMAGE_SEPARATORS.split(entry["images"]) if p.strip()
                    ]
                yield line, entry
        except csv.Error as e:
            raise fail(f"malformed CSV: {e}", reader.line_num) from e
        except UnicodeDecodeError as e:
            raise fail(f"not UTF-8 text: {e.reason}", reader.line_num + 1) from e


def _count_cell(cell: str, line: int, fail: Any) -> int:
    if cell.isascii() and cell.isdigit():
        return int(cell)
    raise fail(f"must be a whole number from 1 to 100, got {cell!r}", line, "count")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _jsonl_rows(path: Path, display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    decode = json.JSONDecoder(object_pairs_hook=_no_duplicates).decode
    line = 0
    with open(path, encoding="utf-8-sig") as f:
        try:
            for line, text in enumerate(f, 1):  # noqa: B007 - `line` is read after the loop too
                if not text or text.isspace():
                    continue
                try:
                    obj = decode(text)
                except _DuplicateKey as e:
                    raise ManifestError(str(e), file=display, line=line) from None
                except json.JSONDecodeError as e:
                    raise ManifestError(
                        f"invalid JSON: {e.msg} (column {e.colno})", file=display, line=line
                    ) from None
                if type(obj) is not dict:
                    raise ManifestError(
                        'each line must be a JSON object such as {"prompt": "..."}, '
                        f"got {kind_of(obj)}", file=display, line=line)
                yield line, obj
        except UnicodeDecodeError as e:
            raise ManifestError(f"not UTF-8 text: {e.reason}", file=display, line=line + 1) from e
        except RecursionError as e:
            raise ManifestError("JSON nested too deeply", file=display, line=line) from e
