"""Manifest: YAML (plus an optional CSV/JSONL prompts file) -> a validated, frozen Manifest.

Everything here is checked before anything is sent; every error names the file, the line
where possible, and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nbbatch import catalog
from nbbatch.errors import ManifestError
from nbbatch.manifest.batch import check_batch_mode
from nbbatch.manifest.entries import (
    DEFAULT_FIELDS,
    SURROGATE_ESCAPE,
    EntryError,
    check_entry,
    find_lone_surrogate,
)
from nbbatch.manifest.items import ItemBuilder
from nbbatch.manifest.names import IdRegistry
from nbbatch.manifest.prompts_file import SUFFIXES, read_rows
from nbbatch.manifest.providers import check_failover, check_providers
from nbbatch.manifest.reading import NotAFileError, open_regular, reason
from nbbatch.manifest.sections import SectionError, build_section, check_value
from nbbatch.manifest.yaml_doc import MAX_MANIFEST_BYTES, DocumentError, NodeLines, load_yaml
from nbbatch.model import (
    BatchConfig,
    Item,
    Manifest,
    Mode,
    PacingConfig,
    ProviderConfig,
    RetryConfig,
)
from nbbatch.providers import registry
from nbbatch.text import format_path, kind_of, shown

# The top-level keys, and the type of those that are not sections of their own.
TOP_LEVEL: dict[str, Any] = {
    "version": int, "output": str, "defaults": None, "providers": None, "pacing": None,
    "retry": None, "failover": None, "prompts": list, "prompts_file": str, "mode": Mode,
    "batch": None,
}


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest (and its prompts file). Raises ManifestError, nothing else,
    for any problem in them."""
    return _Loader(Path(path)).load()


class _Loader:
    def __init__(self, path: Path) -> None:
        self.display = str(path)
        self.path = Path(os.path.abspath(path))  # as the user sees it, symlinks and all
        self.base = self.path.parent
        self.lines: NodeLines | None = None
        self.ids = IdRegistry()

    def fail(
        self, message: str, at: tuple[Any, ...] = (), line: int | None = None
    ) -> ManifestError:
        """An error in the manifest itself, at the node `at` (its line found on demand)."""
        if line is None and self.lines is not None:
            line = self.lines.line(at)
        return ManifestError(message, file=self.display, line=line, field=format_path(at) or None)

    def load(self) -> Manifest:
        data, mapping_lines = self._read()
        try:
            for key, value in data.items():
                if key not in TOP_LEVEL:
                    raise SectionError((key,), f"unknown key {key!r}; allowed keys here: "
                                               f"{', '.join(TOP_LEVEL)}")
                if TOP_LEVEL[key] is not None and value is not None:
                    check_value(TOP_LEVEL[key], value, (key,))
            providers = check_providers(data.get("providers"))
            pacing = self._section(PacingConfig, data, "pacing")
            retry = self._section(RetryConfig, data, "retry")
            failover = check_failover(data.get("failover"))
            batch = self._section(BatchConfig, data, "batch")
        except SectionError as e:
            raise self.fail(e.message, e.path) from None
        if data.get("version") not in (None, 1):
            raise self.fail(f"unsupported version {data['version']}; this nbbatch reads "
                            "version 1", ("version",))
        if retry.initial_delay > retry.max_delay:
            raise self.fail(f"must not exceed max_delay ({retry.max_delay:g})",
                            ("retry", "initial_delay"))
        defaults = self._defaults(data.get("defaults"))
        builder = ItemBuilder(base=self.base, defaults=defaults,
                              provider_models={n: c.model for n, c in providers.items()})
        items = self._items(data.get("prompts") or [], mapping_lines, data.get("prompts_file"),
                            builder)
        for name in sorted({*builder.providers_used, *(failover.order if failover else ())}):
            if name not in providers:
                providers[name] = ProviderConfig(name, timeout=registry.spec(name).timeout)
        manifest = Manifest(
            path=self.path, output=self._output(data.get("output")), providers=providers,
            pacing=pacing, retry=retry, failover=failover, items=items,
            mode=data.get("mode") or "online", batch=batch,
        )
        if manifest.mode == "batch":
            check_batch_mode(manifest, self.display)
        return manifest

    def _read(self) -> tuple[dict[str, Any], dict[int, int]]:
        try:
            raw = self._read_bytes()
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            why = reason(e) if isinstance(e, OSError) else e
            raise self.fail(f"cannot read the manifest: {why}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise self.fail(f"not UTF-8 text: {e.reason}", line=line) from None
        self.lines = NodeLines(text)
        try:
            data, mapping_lines = load_yaml(text)
        except DocumentError as e:
            raise self.fail(e.message, line=e.line) from None
        if SURROGATE_ESCAPE.search(text) and (found := find_lone_surrogate(data)):
            raise self.fail(found[1], found[0])
        if data is None:
            raise self.fail("the manifest is empty: it needs prompts or a prompts_file")
        if not isinstance(data, dict):
            raise self.fail("the manifest must be a mapping of sections "
                            f"({', '.join(TOP_LEVEL)}), got {kind_of(data)}", ())
        return data, mapping_lines

    def _read_bytes(self) -> bytes:
        """The file's bytes, refused unread when it is too large or not a regular file."""
        try:
            f = open_regular(self.path)
        except NotAFileError as e:
            raise self.fail(f"cannot read the manifest: it is {e.kind}, not a file") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size <= MAX_MANIFEST_BYTES:
                raw = f.read(MAX_MANIFEST_BYTES + 1)  # it may grow while we read
                size = max(size, len(raw))
        if size > MAX_MANIFEST_BYTES:
            raise self.fail(f"the manifest is {size / 2**20:.0f} MB; the limit is "
                            f"{MAX_MANIFEST_BYTES // 2**20} MB (put large batches in a "
                            "prompts_file)")
        return raw

    def _output(self, output: str | None) -> Path | None:
        if output is None:
            return None
        if not output.strip():
            raise self.fail("must not be empty", ("output",))
        try:
            return (self.base / output).resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise self.fail(f"cannot use {shown(output)} as a folder: {e}", ("output",)) from None

    @staticmethod
    def _section(cls: Any, data: dict[str, Any], key: str) -> Any:
        raw = data.get(key)
        return cls() if raw is None else build_section(cls, raw, (key,))

    def _defaults(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.fail(f"must be a mapping of {', '.join(DEFAULT_FIELDS)}, got "
                            f"{kind_of(raw)} {shown(raw)}", ("defaults",))
        try:
            defaults = check_entry(raw, DEFAULT_FIELDS)
        except EntryError as e:
            raise self.fail(e.message, ("defaults", *e.key)) from None
        model, provider = defaults.get("model"), defaults.get("provider", "gemini")
        if model is not None and not registry.serves(provider, model):
            raise self.fail(f"{model!r} is a {catalog.family(model)} model, which provider "
                            f"{provider!r} cannot serve", ("defaults", "model"))
        return defaults

    def _items(
        self, inline: list[Any], mapping_lines: dict[int, int], prompts_file: str | None,
        builder: ItemBuilder,
    ) -> tuple[Item, ...]:
        for i, raw in enumerate(inline):
            try:
                item, explicit = builder.build(raw, mapping_lines.get(id(raw)))
            except EntryError as e:
                raise self.fail(e.message, e.at or ("prompts", i, *e.key)) from None
            if (taken := self.ids.add(item, explicit, self.display)) is not None:
                raise self.fail(taken, ("prompts", i, "id"))
        n_inline = len(self.ids.items)
        file_display = ""
        if prompts_file is not None:
            file_display = self._file_items(prompts_file, builder)
        if not self.ids.items:
            raise self.fail("no prompts: add a prompts list or a prompts_file", ())
        if (clash := self.ids.numbered_clashes()) is not None:
            index, message = clash
            if index < n_inline:
                raise self.fail(message, ("prompts", index, "id"))
            raise ManifestError(message, file=file_display, line=self.ids.items[index].line,
                                field="id")
        return tuple(self.ids.items)

    def _file_items(self, name: str, builder: ItemBuilder) -> str:
        at = ("prompts_file",)
        path = self.base / name
        display = str(Path(self.display).parent / name)
        if path.suffix.lower() not in SUFFIXES:
            raise self.fail(f"must name a .csv, .jsonl or .ndjson file, got {shown(name)}", at)
        try:
            f = open_regular(path)
        except (FileNotFoundError, NotADirectoryError):
            raise self.fail(f"prompts file {shown(name)} not found (looked for {path})",
                            at) from None
        except NotAFileError as e:
            raise self.fail(f"prompts file {shown(name)} is {e.kind}, not a file ({path})",
                            at) from None
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
            raise self.fail(f"cannot read the prompts file {shown(name)}: "
                            f"{reason(e) if isinstance(e, OSError) else e}", at) from None
        line = None
        with f:
            try:
                for line, raw in read_rows(f, path.suffix, display):
                    try:
                        item, explicit = builder.build(raw, line)
                    except EntryError as e:
                        if e.at is not None:
                            raise self.fail(e.message, e.at) from None
                        raise ManifestError(e.message, file=display, line=line,
                                            field=format_path(e.key) or None) from None
                    if (taken := self.ids.add(item, explicit, display)) is not None:
                        raise ManifestError(taken, file=display, line=line, field="id")
            except OSError as e:
                raise ManifestError(f"cannot read the prompts file: {reason(e)}", file=display,
                                    line=line) from None
        return display
