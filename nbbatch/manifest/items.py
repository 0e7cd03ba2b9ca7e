"""Checked prompt entries -> Items: defaults applied, the model chosen and fitted, ids
derived, reference images found and hashed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbbatch import catalog
from nbbatch.images import sniff
from nbbatch.manifest.entries import (
    ENTRY_FIELDS,
    EntryError,
    check_entry,
    check_field,
    derive_id,
)
from nbbatch.manifest.reading import NotAFileError, open_regular, reason
from nbbatch.model import Item
from nbbatch.providers import registry
from nbbatch.text import kind_of, shown

MAX_REFERENCE_BYTES = 20 * 1024 * 1024
OWN_FIELDS = ("id", "prompt")  # every entry has its own; the other fields, entries share


# What the shared fields resolve to: provider, model, aspect ratio, image size, count,
# references and their digests.
_Shared = tuple[str, str, str | None, str | None, int, tuple[Path, ...], tuple[str, ...]]


class ItemBuilder:
    """Turns checked entries into items, applying defaults. Reference files are read and
    hashed once per distinct path, however many entries name them."""

    def __init__(
        self,
        *,
        base: Path,
        defaults: Mapping[str, Any],
        provider_models: Mapping[str, str | None],
    ) -> None:
        self._base = base
        self._defaults = defaults
        self._provider = defaults.get("provider", "gemini")
        self._aspect = defaults.get("aspect_ratio")
        self._size = defaults.get("image_size")
        self._count = defaults.get("count", 1)
        self._shapes: set[tuple[str, str | None, str | None]] = set()  # checked combinations
        self._provider_models = provider_models
        self._refs: dict[str, tuple[Path, str]] = {}
        self._digests: dict[Path, str] = {}
        self._resolved: dict[tuple[tuple[str, Any], ...], _Shared] = {}
        self.providers_used: set[str] = set()

    def build(self, raw: Any, line: int | None) -> tuple[Item, bool]:
        """Return (item, whether its id was given explicitly)."""
        if not isinstance(raw, dict):
            raise EntryError(
                "must be a mapping with at least a prompt (- prompt: A red sneaker), "
                f"got {kind_of(raw)} {shown(raw)}"
            )
        given_id, written = raw.get("id"), raw.get("prompt")
        explicit = given_id is not None
        item_id: str = check_field("id", given_id) if explicit else ""  # derived below
        if written is None:
            raise EntryError("required: the text to generate an image from", ("prompt",))
        prompt = check_field("prompt", written)
        rest = [(k, v) for k, v in raw.items() if k not in OWN_FIELDS]
        provider, model, aspect, size, count, refs, digests = self._shared(rest)
        written = written.strip()
        legacy = written if written != prompt else None  # normalising changed it
        item = Item(
            id=item_id or derive_id(prompt), prompt=prompt, provider=provider,
            model=model, aspect_ratio=aspect, image_size=size, count=count,
            references=refs, reference_digests=digests, line=line, legacy_prompt=legacy,
            legacy_id=derive_id(legacy) if legacy is not None and not explicit else None,
        )
        return item, explicit

    def _shared(self, rest: list[tuple[str, Any]]) -> _Shared:
        """What the fields besides id and prompt resolve to. 100,000 rows repeat a few
        combinations of them: each is checked once. Only text and whole numbers make a key:
        True, 1 and 1.0 are equal in Python but not in a manifest."""
        key = tuple(rest) if all(type(v) is str or type(v) is int for _, v in rest) else None
        found = self._resolved.get(key) if key is not None else None
        if found is None:
            found = self._resolve(check_entry(dict(rest), ENTRY_FIELDS))
            if key is not None:
                self._resolved[key] = found
        return found

    def _resolve(self, e: Mapping[str, Any]) -> _Shared:
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
        self.providers_used.add(provider)
        return provider, model, aspect, size, e.get("count", self._count), refs, digests

    def _check_shape(
        self, e: Mapping[str, Any], model: str, aspect: str | None, size: str | None
    ) -> None:
        info = catalog.lookup(model)
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
            if not registry.serves(provider, model):
                raise EntryError(f"{model!r} is a {catalog.family(model)} model, which provider "
                                 f"{provider!r} cannot serve", ("model",))
            return model
        if provider == self._provider:
            model = self._defaults.get("model")
        model = (model or self._provider_models.get(provider)
                 or registry.default_model(provider))
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
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_REFERENCE_BYTES:
                raise ValueError(f"reference image {shown(raw)} is {size / 2**20:.1f} MB; "
                                 "the limit is 20 MB")
            data = f.read(MAX_REFERENCE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"reference image {shown(raw)} not found (looked for {path})") from None
    except NotAFileError as e:
        raise ValueError(f"reference image {shown(raw)} is not a file ({path} is "
                         f"{e.kind})") from None
    except OSError as e:
        raise ValueError(f"cannot read reference image {shown(raw)}: {reason(e)}") from None
    if len(data) > MAX_REFERENCE_BYTES:
        raise ValueError(f"reference image {shown(raw)} grew past 20 MB while being read")
    if sniff(data) is None:
        raise ValueError(f"reference image {shown(raw)} is not a PNG, JPEG or WEBP file ({path})")
    return hashlib.sha256(data).hexdigest()
