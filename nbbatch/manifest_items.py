"""Prompt entries -> items: field checks, defaults, models, ids and reference images.

Entries are checked by one plain function per field rather than a pydantic model per entry:
a prompts file may hold 100,000 rows, and this keeps loading them fast with messages just as
precise. The same checks serve inline entries, CSV and JSONL rows, and `defaults`.
"""

from __future__ import annotations

import hashlib
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nbbatch.catalog import DEFAULT_MODEL, MODELS
from nbbatch.manifest_schema import ENTRY_FIELDS, PROVIDERS, kind_of, shown

IMAGE_SIZES = ("512", "1K", "2K", "4K")
MAX_REFERENCE_BYTES = 20 * 1024 * 1024

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
# Which providers can serve each model family (the simulator stands in for Gemini models).
_SERVERS = {"gemini": ("gemini", "vertex", "simulator"), "openai": ("openai",)}


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


def family(model: str) -> str | None:
    """The provider family a model belongs to, when nbbatch can tell."""
    info = MODELS.get(model)
    if info is not None:
        return info.provider
    return "openai" if model.startswith(("gpt-image", "dall-e")) else None


def serves(provider: str, model: str) -> bool:
    """Whether `provider` can serve `model` (a model nbbatch does not know: assumed yes)."""
    fam = family(model)
    return fam is None or provider in _SERVERS.get(fam, (fam,))


# ----------------------------------------------------------------------------- fields
# Each check takes a raw value (never None) and returns it clean, or raises EntryError.


def _text(value: Any, hint: str = "") -> str:
    if not isinstance(value, str):
        raise EntryError(f"must be text, got {kind_of(value)} {shown(value)}{hint}")
    return value


def _check_id(value: Any) -> str:
    try:
        return validate_id(_text(value, f'; quote it: id: "{value}"'))
    except ValueError as e:
        raise EntryError(str(e)) from None


def _check_prompt(value: Any) -> str:
    text = _text(value).strip()
    if not text:
        raise EntryError("is empty: write the text to generate an image from")
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
        if value is None:
            continue
        try:
            out[key] = _CHECKS[key](value)
        except EntryError as e:
            raise EntryError(e.message, (key, *e.key)) from None
    return out


# ------------------------------------------------------------------------------ items


class ItemBuilder:
    """Turns checked entries into items, applying defaults. Reference files are read and
    hashed once per distinct path, however many entries name them. `make_item` is
    manifest.Item, passed in because manifest.py imports this module."""

    def __init__(
        self,
        *,
        base: Path,
        defaults: Mapping[str, Any],
        provider_models: Mapping[str, str | None],
        make_item: Callable[..., Any],
    ) -> None:
        self._base = base
        self._defaults = defaults
        self._provider = defaults.get("provider", "gemini")
        self._aspect = defaults.get("aspect_ratio")
        self._size = defaults.get("image_size")
        self._count = defaults.get("count", 1)
        self._shapes: set[tuple[str, str | None, str | None]] = set()  # checked combinations
        self._provider_models = provider_models
        self._make = make_item
        self._refs: dict[str, tuple[Path, str]] = {}
        self._digests: dict[Path, str] = {}
        self.providers_used: set[str] = set()

    def build(self, raw: Any, line: int | None) -> tuple[Any, bool]:
        """Return (item, whether its id was given explicitly)."""
        if not isinstance(raw, dict):
            raise EntryError(
                "must be a mapping with at least a prompt (- prompt: A red sneaker), "
                f"got {kind_of(raw)} {shown(raw)}"
            )
        e = check_entry(raw, ENTRY_FIELDS)
        prompt = e.get("prompt")
        if prompt is None:
            raise EntryError("required: the text to generate an image from", ("prompt",))
        provider = e.get("provider", self._provider)
        model = self._model(provider, e)
        aspect = e.get("aspect_ratio", self._aspect)
        size = e.get("image_size", self._size)
        if (model, aspect, size) not in self._shapes:
            self._check_shape(e, model, aspect, size)
        refs: tuple[Path, ...] = ()
        digests: tuple[str, ...] = ()
        if images := e.get("images"):
            pairs = [self._reference(path, j) for j, path in enumerate(images)]
            refs, digests = tuple(p for p, _ in pairs), tuple(d for _, d in pairs)
        explicit = "id" in e
        self.providers_used.add(provider)
        item = self._make(
            id=e["id"] if explicit else derive_id(prompt), prompt=prompt, provider=provider,
            model=model, aspect_ratio=aspect, image_size=size,
            count=e.get("count", self._count),
            references=refs, reference_digests=digests, line=line,
        )
        return item, explicit

    def _check_shape(
        self, e: Mapping[str, Any], model: str, aspect: str | None, size: str | None
    ) -> None:
        info = MODELS.get(model)
        if info is not None:
            if aspect is not None and aspect not in info.aspect_ratios:
                raise _blame(e, "aspect_ratio", f"aspect ratio {aspect!r} is not supported by "
                             f"{model}; use one of {', '.join(info.aspect_ratios)}")
            if size is not None and size not in info.image_sizes:
                raise _blame(e, "image_size", f"image size {size!r} is not supported by "
                             f"{model}; use one of {', '.join(info.image_sizes)}")
        self._shapes.add((model, aspect, size))

    def _model(self, provider: str, e: Mapping[str, Any]) -> str:
        """The entry's model, else the first of: defaults.model (for the default provider),
        providers.<provider>.model, the catalog's default. The load checked those already."""
        model = e.get("model")
        if model is not None:
            if not serves(provider, model):
                raise EntryError(f"{model!r} is a {family(model)} model, which provider "
                                 f"{provider!r} cannot serve", ("model",))
            return model
        if provider == self._provider:
            model = self._defaults.get("model")
        model = model or self._provider_models.get(provider) or DEFAULT_MODEL.get(provider)
        if model is None:
            message = (f"no model for provider {provider!r}: set a model here, in defaults, "
                       f"or as providers.{provider}.model")
            if "provider" in e:
                raise EntryError(message, ("provider",))
            raise EntryError(message, at=("defaults", "provider"))
        return model

    def _reference(self, raw: str, j: int) -> tuple[Path, str]:
        hit = self._refs.get(raw)
        if hit is None:
            try:
                path = (self._base / raw).resolve()
            except (OSError, RuntimeError, ValueError) as e:  # a NUL byte, a symlink loop
                raise EntryError(f"cannot use reference image path {shown(raw)}: {e}",
                                 ("images", j)) from None
            digest = self._digests.get(path)
            if digest is None:
                try:
                    digest = self._digests[path] = _digest_reference(path, raw)
                except ValueError as e:
                    raise EntryError(str(e), ("images", j)) from None
            hit = self._refs[raw] = (path, digest)
        return hit


def _blame(e: Mapping[str, Any], field: str, message: str) -> EntryError:
    if field in e:
        return EntryError(message, (field,))
    for cause in ("model", "provider"):  # the entry's choice made the default unfit
        if cause in e:
            return EntryError(message, (cause,))
    return EntryError(message, at=("defaults", field))


def _digest_reference(path: Path, raw: str) -> str:
    """SHA-256 of a reference image, after checking it is one. ValueError otherwise."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"reference image {shown(raw)} not found (looked for {path})") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or e
        raise ValueError(f"cannot read reference image {shown(raw)}: {reason}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"reference image {shown(raw)} is not a file ({path})")
    if st.st_size > MAX_REFERENCE_BYTES:
        raise ValueError(f"reference image {shown(raw)} is {st.st_size / 2**20:.1f} MB; "
                         "the limit is 20 MB")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read reference image {shown(raw)}: {e.strerror}") from None
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not (data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")) or is_webp):
        raise ValueError(f"reference image {shown(raw)} is not a PNG, JPEG or WEBP file ({path})")
    return hashlib.sha256(data).hexdigest()
