"""The fields of a prompt entry, each checked by one plain function, and safe ids.

Entries are checked by one plain function per field rather than a pydantic model per entry:
a prompts file may hold 100,000 rows, and this keeps loading them fast with messages just as
precise. The same checks serve inline entries, CSV and JSONL rows, and `defaults`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from nbbatch.providers.registry import NAMES as PROVIDERS
from nbbatch.text import kind_of, shown

ENTRY_FIELDS = (
    "id", "prompt", "provider", "model", "aspect_ratio", "image_size", "count", "images",
)
DEFAULT_FIELDS = ("provider", "model", "aspect_ratio", "image_size", "count")
IMAGE_SIZES = ("512", "1K", "2K", "4K")

# 1-100 safe characters, starting with a letter or digit; no "..", no "." at the end
_ID_RE = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?<!\.)")
_ID_RULE = (
    "ids become file names, so use 1-100 of the characters A-Z a-z 0-9 . _ - , starting with "
    "a letter or digit, with no '..' and no '.' at the end"
)
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10))}
)
_RESERVED_STEMS = frozenset(name[:3] for name in _RESERVED)
_RATIO_RE = re.compile(r"[1-9][0-9]{0,2}:[1-9][0-9]{0,2}")
_MODEL_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")
_WORD_RE = re.compile(r"[a-z0-9]+")


class EntryError(Exception):
    """A problem in one entry. `key` is the path inside the entry, e.g. ("images", 1); `at`,
    when set, is a path in the manifest to blame instead (a default or a provider setting)."""

    def __init__(
        self, message: str, key: tuple[Any, ...] = (), at: tuple[Any, ...] | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.key, self.at = message, key, at


def validate_id(value: str) -> str:
    """Return `value` if it is a safe file-name stem; ValueError saying what is allowed."""
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"unsafe id {shown(value)}: {_ID_RULE}")
    if value[:3].upper() in _RESERVED_STEMS and value.split(".", 1)[0].upper() in _RESERVED:
        raise ValueError(f"unsafe id {value!r}: it is a reserved file name on Windows")
    return value


def derive_id(prompt: str) -> str:
    """A stable id for a prompt without one: a slug of its words plus 8 hex of its SHA-256."""
    text = prompt[:200]  # plenty for a 40-character slug, and long prompts cost no more
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "-".join(_WORD_RE.findall(text.lower()))
    if len(slug) > 40:  # cut at a word boundary when there is one
        cut = slug.rfind("-", 0, 41)
        slug = slug[:cut] if cut > 0 else slug[:40]
    return f"{slug or 'img'}-{hashlib.sha256(prompt.encode()).hexdigest()[:8]}"



# JSON's and YAML's escapes are the only way text can hold an unpaired surrogate, which no
# encoding can carry (a file name or an HTTP body with one fails far from the manifest).
SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")


def find_lone_surrogate(value: Any, at: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """(path, message) for the first text in `value` holding an unpaired surrogate, or None.
    Walked only when the source has a surrogate escape: valid pairs (emoji) pass."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return at, (f"holds an unpaired surrogate (\\u{ord(value[exc.start]):04x}) at "
                        f"character {exc.start + 1}, which no text can contain; fix the escape")
        return None
    children = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, child in children:
        if isinstance(key, str) and (found := find_lone_surrogate(key, at)):
            return found
        if found := find_lone_surrogate(child, (*at, key)):
            return found
    return None


# ----------------------------------------------------------------------------- fields
# Each check takes a raw value (never None) and returns it clean, or raises EntryError.


def _text(value: Any, hint: str = "") -> str:
    if not isinstance(value, str):
        raise EntryError(f"must be text, got {kind_of(value)} {shown(value)}{hint}")
    return value


def _check_id(value: Any) -> str:
    if not isinstance(value, str):  # the hint is built only when needed: 100,000 ids pass
        _text(value, f'; quote it: id: "{value}"')
    try:
        return validate_id(value)
    except ValueError as e:
        raise EntryError(str(e)) from None


def _check_prompt(value: Any) -> str:
    text = normalized(_text(value).strip())
    if not text:
        raise EntryError("is empty: write the text to generate an image from")
    return text


def normalized(text: str) -> str:
    """One spelling for the same text, so re-saving a file never changes what it asks for:
    line breaks as LF (a CSV saved with CRLF keeps CRLF inside quoted cells) and Unicode in NFC
    (editors on macOS may save NFD). Fingerprints and derived ids hash this form."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text


def _check_provider(value: Any) -> str:
    if _text(value) not in PROVIDERS:
        raise EntryError(
            f"unknown provider {shown(value)}; known providers: {', '.join(PROVIDERS)}")
    return value


def _check_model(value: Any) -> str:
    if not _MODEL_RE.fullmatch(_text(value)):
        raise EntryError(f"{shown(value)} is not a model name (empty, or with spaces)")
    return value


def _check_aspect_ratio(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise EntryError(
            f'must be text such as "4:3", got the number {value!r}: quote it '
            "(YAML reads an unquoted 4:3 as a number)"
        )
    if not _RATIO_RE.fullmatch(_text(value)):
        raise EntryError(f'{shown(value)} is not an aspect ratio; write width:height, e.g. "4:3"')
    return value


def _check_image_size(value: Any) -> str:
    if _text(value, f'; write it in quotes: "{value}"' if value == 512 else "") in IMAGE_SIZES:
        return value
    if value.upper() in IMAGE_SIZES:
        raise EntryError(f"{value!r} needs an upper-case K: write {value.upper()!r}")
    raise EntryError(f"{shown(value)} is not an image size; use one of {', '.join(IMAGE_SIZES)}")


def _check_count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    got = value if is_int else f"{kind_of(value)} {shown(value)}"
    raise EntryError(f"must be a whole number from 1 to 100, got {got}")


def _check_images(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise EntryError(
            f"must be a list of image paths, e.g. [refs/a.png], got {kind_of(value)} {shown(value)}"
        )
    for j, path in enumerate(value):
        if not isinstance(path, str) or not path.strip():
            raise EntryError(f"must be a path to an image file, got {kind_of(path)} {shown(path)}",
                             (j,))
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "id": _check_id, "prompt": _check_prompt, "provider": _check_provider,
    "model": _check_model, "aspect_ratio": _check_aspect_ratio,
    "image_size": _check_image_size, "count": _check_count, "images": _check_images,
}


def check_entry(raw: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Check each given field; return {field: clean value} without the fields left unset."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise EntryError(f"unknown key {shown(key)}; allowed keys: {', '.join(allowed)}",
                             (key,))
        if value is not None:
            out[key] = check_field(key, value)
    return out


def check_field(key: str, value: Any) -> Any:
    """The clean value of one known field (`value` not None); EntryError names the field."""
    try:
        return _CHECKS[key](value)
    except EntryError as e:
        raise EntryError(e.message, (key, *e.key)) from None
