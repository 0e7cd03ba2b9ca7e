"""Prompts from a CSV or JSONL file, for batches too large to write inline.

Each row becomes a raw entry with the same fields as a prompt entry in the manifest, and
the loader checks it exactly like one. This module only reads rows, with their line numbers,
and turns CSV cells into typed values (count -> int, images -> list). Files are decoded line by
line so that even an encoding error is reported at its line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from nbbatch.errors import ManifestError
from nbbatch.manifest.entries import ENTRY_FIELDS, SURROGATE_ESCAPE, find_lone_surrogate
from nbbatch.text import format_path, kind_of

SUFFIXES = (".csv", ".jsonl", ".ndjson")
_IMAGE_SEPARATORS = re.compile(r"[;|]")
_ALLOWED = ", ".join(ENTRY_FIELDS)


def read_rows(f: IO[bytes], suffix: str, display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line, raw entry) for each prompt in the open file `f` (a .csv, else JSONL);
    `display` names it in errors. Raises ManifestError for a malformed file, OSError when it
    cannot be read."""
    if suffix.lower() == ".csv":
        return _csv_rows(f, display)
    return _jsonl_rows(f, display)


@contextlib.contextmanager
def _text_of(f: IO[bytes], display: str) -> Iterator[io.TextIOWrapper]:
    """The file as text, read line by line with each line's break (UTF-8, a BOM allowed),
    decoded in C a block at a time; bad UTF-8 is an error at its line."""
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    try:
        yield text
    except UnicodeDecodeError as e:
        raise ManifestError(f"not UTF-8 text: {e.reason}", file=display,
                            line=_first_bad_line(f)) from None
    finally:
        with contextlib.suppress(ValueError):
            text.detach()  # the caller owns the file and closes it


def _first_bad_line(f: IO[bytes]) -> int | None:
    """Where the first bytes that are not UTF-8 are (read again only on that error)."""
    f.seek(0)
    for number, raw in enumerate(f, 1):
        try:
            raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            return number
    return None


def _csv_rows(f: IO[bytes], display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    def fail(message: str, line: int, field: str | None = None) -> ManifestError:
        return ManifestError(message, file=display, line=line, field=field)

    with _text_of(f, display) as text:
        # strict: a stray quote is an error at its row, not a cell that swallows the rest of
        # the file (the lax reader runs a quoted cell on to the next quote, or to the end).
        reader = csv.reader(text, strict=True)
        prev = 0
        try:
            header = [name.strip() for name in next(reader, [])]
            _check_header(header, fail)
            width, prev = len(header), reader.line_num
            for row in reader:
                line, prev = prev + 1, reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    raise fail(f"this row has {len(row)} cells but the header has {width} "
                               "columns (quote cells that contain a comma)", line)
                entry: dict[str, Any] = {
                    name: cell for name, cell in zip(header, map(str.strip, row), strict=True)
                    if cell
                }
                if "count" in entry:
                    count = entry["count"]
                    if not (count.isascii() and count.isdigit()):
                        raise fail(f"must be a whole number from 1 to 100, got {count!r}",
                                   line, "count")
                    entry["count"] = int(count)
                if "images" in entry:
                    entry["images"] = [p.strip() for p in
                                       _IMAGE_SEPARATORS.split(entry["images"]) if p.strip()]
                yield line, entry
        except csv.Error as e:
            raise fail(f"malformed CSV in the row that starts here ({e}): a quoted cell must "
                       "close with a quote right before a comma or the end of its line; write "
                       'a quote inside a quoted cell as ""', prev + 1) from None


def _check_header(header: list[str], fail: Any) -> None:
    if not any(header):
        raise fail(f"the first row must be a header naming the columns ({_ALLOWED})", 1)
    for name in header:
        if name not in ENTRY_FIELDS:
            what = f"unknown column {name!r}" if name else "a column has no name"
            raise fail(f"{what} in the header; allowed columns: {_ALLOWED}", 1)
        if header.count(name) > 1:
            raise fail(f"column {name!r} appears twice in the header", 1)
    if "prompt" not in header:
        raise fail(f"the header has no 'prompt' column (columns: {_ALLOWED})", 1)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return obj


def _jsonl_rows(f: IO[bytes], display: str) -> Iterator[tuple[int, dict[str, Any]]]:
    decode = json.JSONDecoder(object_pairs_hook=_no_duplicates).decode
    with _text_of(f, display) as lines:
        for line, text in enumerate(lines, 1):
            if not text or text.isspace():
                continue
            try:
                obj = decode(text)
            except _DuplicateKey as e:
                raise ManifestError(f"duplicate key {e.args[0]!r}", file=display,
                                    line=line) from None
            except json.JSONDecodeError as e:
                raise ManifestError(f"invalid JSON: {e.msg} (column {e.colno})",
                                    file=display, line=line) from None
            except RecursionError:
                raise ManifestError("JSON nested too deeply", file=display,
                                    line=line) from None
            if type(obj) is not dict:
                raise ManifestError('each line must be a JSON object such as {"prompt": '
                                    f'"..."}}, got {kind_of(obj)}', file=display, line=line)
            if SURROGATE_ESCAPE.search(text) and (found := find_lone_surrogate(obj)):
                raise ManifestError(found[1], file=display, line=line,
                                    field=format_path(found[0]) or None)
            yield line, obj
