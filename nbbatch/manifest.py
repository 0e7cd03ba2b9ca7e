"""Manifest: YAML (plus an optional CSV/JSONL prompts file) -> validated, frozen items.

Everything here is checked before anything is sent; every error names the file, the line
where possible, and the field.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import random
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from nbbatch.catalog import DEFAULT_MODEL, MODELS
from nbbatch.errors import ManifestError, UsageError
from nbbatch.manifest_items import EntryError, ItemBuilder, check_entry, family, serves
from nbbatch.manifest_schema import (
    DEFAULT_FIELDS,
    MAX_MANIFEST_BYTES,
    PROVIDERS,
    DocumentError,
    FailoverSchema,
    ManifestSchema,
    NodeLines,
    PacingSchema,
    RetrySchema,
    SectionError,
    format_path,
    kind_of,
    load_yaml,
    shown,
    validate_sections,
)
from nbbatch.prompts_file import SUFFIXES, read_rows


@dataclass(frozen=True)
class Interval:
    """Seconds between request starts on one provider, drawn uniformly from [low, high]."""

    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    api_key_env: str | None = None  # None: the provider's default variable(s)
    base_url: str | None = None  # None: the provider's public endpoint
    timeout: float = 180.0  # seconds, total, for one request
    model: str | None = None  # model this provider uses when it serves as a backup
    options: Mapping[str, Any] = field(default_factory=dict)  # provider-specific extras


@dataclass(frozen=True)
class PacingConfig:
    interval: Interval = Interval(5.0, 10.0)
    concurrency: int = 4


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 6  # per image and run, all causes together
    initial_delay: float = 2.0
    max_delay: float = 120.0


@dataclass(frozen=True)
class FailoverConfig:
    order: tuple[str, ...]
    trip_after: int = 3
    probe_every: float = 300.0


@dataclass(frozen=True)
class Item:
    """One manifest entry with defaults applied. `count` images are made from it."""

    id: str
    prompt: str
    provider: str
    model: str
    aspect_ratio: str | None = None
    image_size: str | None = None
    count: int = 1
    references: tuple[Path, ...] = ()  # absolute paths
    reference_digests: tuple[str, ...] = ()  # sha256 hex of each reference file's bytes
    line: int | None = None  # where the entry starts in its file

    @cached_property
    def fingerprint(self) -> str:
        """Hash of everything that shapes the image: a change means it is made again."""
        shape = [self.prompt, self.provider, self.model, self.aspect_ratio, self.image_size,
                 self.reference_digests]
        return hashlib.sha256(_FINGERPRINT_JSON.encode(shape).encode()).hexdigest()


# One shared encoder: json.dumps with options builds a new one per call, which costs more
# than the hashing on a 100,000-prompt manifest. The field order is part of the fingerprint.
_FINGERPRINT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Manifest:
    path: Path  # absolute
    output: Path | None  # absolute (resolved against the manifest's folder), or None
    providers: Mapping[str, ProviderConfig]
    pacing: PacingConfig
    retry: RetryConfig
    failover: FailoverConfig | None
    items: tuple[Item, ...]

    @property
    def image_count(self) -> int:
        return sum(item.count for item in self.items)


# ----------------------------------------------------------------------------- loading

_INTERVAL_FORMS = 'seconds as a number (7), a range "5-10" or a list [5, 10]'
_INTERVAL_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:-\s*(\d+(?:\.\d*)?|\.\d+)\s*)?")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBERED_RE = re.compile(r"(.+)-([1-9][0-9]{0,2})")
_OPTIONS = ("project", "location", "latency", "faults", "daily_quota", "seed", "quality",
            "background", "output_format", "moderation", "input_fidelity", "organization")
# GPT image models can take minutes at high quality; Gemini answers within 180 s.
_DEFAULT_TIMEOUT = {"openai": 300.0}


def parse_interval(value: Any) -> Interval:
    """7, 7.5, "7", "5-10" or [5, 10] -> Interval. ValueError naming the accepted forms."""
    number = (int, float)
    try:
        if isinstance(value, str) and (m := _INTERVAL_RE.fullmatch(value)):
            low, high = float(m[1]), float(m[2] or m[1])
        elif (isinstance(value, list | tuple) and len(value) == 2
              and all(isinstance(v, number) and not isinstance(v, bool) for v in value)):
            low, high = float(value[0]), float(value[1])
        elif isinstance(value, number) and not isinstance(value, bool):
            low = high = float(value)
        else:
            raise ValueError(f"expected {_INTERVAL_FORMS}, got {shown(value)}")
    except OverflowError:
        raise ValueError(f"expected {_INTERVAL_FORMS}, got a number too large") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"expected {_INTERVAL_FORMS}, got {shown(value)}")
    if low < 0:
        raise ValueError(f"seconds must not be negative, got {shown(value)}")
    if low > high:
        raise ValueError(f"the range {low:g}-{high:g} is reversed: put the smaller number first")
    return Interval(low, high)


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest (and its prompts file). Raises ManifestError, nothing else,
    for any problem in them."""
    # Loading makes a few objects per prompt and no reference cycles: the cyclic garbage
    # collector would only rescan the growing heap (a sixth of the time for 100,000 rows).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(Path(path)).load()
    finally:
        if was_enabled:
            gc.enable()


class _Loader:
    def __init__(self, path: Path) -> None:
        self.display = str(path)
        self.path = Path(os.path.abspath(path))  # as the user sees it, symlinks and all
        self.base = self.path.parent
        self.lines: NodeLines | None = None
        self.items: list[Item] = []
        self.seen: dict[str, tuple[int, bool]] = {}  # lower-case id -> (index, explicit id)
        self.n_inline = 0
        self.file_display = ""

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
            schema = validate_sections(data)
        except SectionError as e:
            raise self.fail(e.message, e.path) from None
        if schema.version is not None and schema.version != 1:
            raise self.fail(f"unsupported version {schema.version}; this nbbatch reads version 1",
                            ("version",))
        output = None
        if schema.output is not None:
            if not schema.output.strip():
                raise self.fail("must not be empty", ("output",))
            try:
                output = (self.base / schema.output).resolve()
            except (OSError, RuntimeError, ValueError) as e:
                raise self.fail(f"cannot use {shown(schema.output)} as a folder: {e}",
                                ("output",)) from None
        providers = self._providers(schema)
        pacing, retry = self._pacing(schema.pacing), self._retry(schema.retry)
        failover = self._failover(schema.failover)
        defaults = self._defaults(data.get("defaults"))
        builder = ItemBuilder(
            base=self.base, defaults=defaults, make_item=Item,
            provider_models={name: cfg.model for name, cfg in providers.items()},
        )
        items = self._items(data.get("prompts") or [], mapping_lines, schema.prompts_file, builder)
        for name in sorted({*builder.providers_used, *(failover.order if failover else ())}):
            providers.setdefault(name, ProviderConfig(name))
        return Manifest(
            path=self.path, output=output, providers=providers, pacing=pacing, retry=retry,
            failover=failover, items=items,
        )

    def _read(self) -> tuple[dict[str, Any], dict[int, int]]:
        try:
            raw = self._read_bytes()
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            reason = getattr(e, "strerror", None) or e
            raise self.fail(f"cannot read the manifest: {reason}") from None
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
        if data is None:
            raise self.fail("the manifest is empty: it needs prompts or a prompts_file")
        if not isinstance(data, dict):
            raise self.fail("the manifest must be a mapping of sections (version, output, "
                            "defaults, providers, pacing, retry, failover, prompts, prompts_file), "
                            f"got {kind_of(data)}", ())
        return data, mapping_lines

    def _read_bytes(self) -> bytes:
        """The file's bytes, refused unread when it is too large or not a regular file: a
        device (/dev/zero), a pipe or a folder never ends, blocks, or has no text at all."""
        # O_NONBLOCK: opening a pipe must not wait for a writer; no effect on a regular file.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "a device or a pipe"
            raise self.fail(f"cannot read the manifest: it is {what}, not a file")
        with os.fdopen(fd, "rb") as f:
            size = st.st_size
            if size <= MAX_MANIFEST_BYTES:
                raw = f.read(MAX_MANIFEST_BYTES + 1)  # it may grow while we read
                size = max(size, len(raw))
        if size > MAX_MANIFEST_BYTES:
            raise self.fail(f"the manifest is {size / 2**20:.0f} MB; the limit is "
                            f"{MAX_MANIFEST_BYTES // 2**20} MB (put large batches in a "
                            "prompts_file)")
        return raw

    def _providers(self, schema: ManifestSchema) -> dict[str, ProviderConfig]:
        out: dict[str, ProviderConfig] = {}
        section = schema.providers
        for name in PROVIDERS:
            cfg = getattr(section, name, None) if section is not None else None
            if cfg is None:
                if section is not None and name in section.model_fields_set:
                    out[name] = ProviderConfig(name)  # `gemini:` with nothing under it
                continue
            at = ("providers", name)
            if cfg.api_key_env is not None and not _ENV_NAME_RE.fullmatch(cfg.api_key_env):
                raise self.fail("must be the NAME of the environment variable that holds the key "
                                "(letters, digits, _), never the key itself", (*at, "api_key_env"))
            if cfg.base_url is not None and not cfg.base_url.startswith(("https://", "http://")):
                raise self.fail("must start with https:// (or http://), got "
                                f"{shown(cfg.base_url)}", (*at, "base_url"))
            if cfg.model is not None:
                try:
                    check_entry({"model": cfg.model}, ("model",))
                except EntryError as e:
                    raise self.fail(e.message, (*at, "model")) from None
                if not serves(name, cfg.model):
                    raise self.fail(f"{cfg.model!r} is a {family(cfg.model)} model, which "
                                    f"provider {name!r} cannot serve", (*at, "model"))
            options = {k: getattr(cfg, k) for k in _OPTIONS if getattr(cfg, k, None) is not None}
            if "latency" in options:
                latency = self._interval(options["latency"], (*at, "latency"))
                options["latency"] = (latency.low, latency.high)
            if "faults" in options:
                options["faults"] = self._faults(options["faults"], (*at, "faults"))
            out[name] = ProviderConfig(
                name, api_key_env=cfg.api_key_env, base_url=cfg.base_url,
                timeout=_DEFAULT_TIMEOUT.get(name, 180.0) if cfg.timeout is None else cfg.timeout,
                model=cfg.model,
                options=options,
            )
        return out

    def _faults(self, value: Any, at: tuple[Any, ...]) -> str:
        """The simulator's fault rates as its spec string, "503=0.3,429=0.1" (a mapping of the
        same keys and rates is accepted too)."""
        from nbbatch.simulate import parse_faults  # only manifests that inject faults need it

        if isinstance(value, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        ):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        if not isinstance(value, str):
            raise self.fail(f'must be fault rates such as "503=0.3,429=0.1", got {kind_of(value)} '
                            f"{shown(value)}", at)
        try:
            parse_faults(value)
        except ValueError as e:
            raise self.fail(str(e), at) from None
        return value

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
        model = defaults.get("model")
        if model is not None and not serves(defaults.get("provider", "gemini"), model):
            raise self.fail(f"{model!r} is a {family(model)} model, which provider "
                            f"{defaults.get('provider', 'gemini')!r} cannot serve",
                            ("defaults", "model"))
        return defaults

    def _interval(self, value: Any, at: tuple[Any, ...]) -> Interval:
        try:
            return parse_interval(value)
        except ValueError as e:
            raise self.fail(str(e), at) from None

    def _pacing(self, section: PacingSchema | None) -> PacingConfig:
        default = PacingConfig()
        if section is None:
            return default
        interval = section.interval
        return PacingConfig(
            interval=default.interval if interval is None
            else self._interval(interval, ("pacing", "interval")),
            concurrency=default.concurrency if section.concurrency is None else section.concurrency,
        )

    def _retry(self, section: RetrySchema | None) -> RetryConfig:
        if section is None:
            return RetryConfig()
        given = {k: v for k, v in section.model_dump().items() if v is not None}
        retry = replace(RetryConfig(), **given)
        if retry.initial_delay > retry.max_delay:
            raise self.fail(f"must not exceed max_delay ({retry.max_delay:g})",
                            ("retry", "initial_delay"))
        return retry

    def _failover(self, section: FailoverSchema | None) -> FailoverConfig | None:
        if section is None:
            return None
        for j, name in enumerate(section.order):
            if name not in PROVIDERS:
                raise self.fail(f"unknown provider {shown(name)}; known providers: "
                                f"{', '.join(PROVIDERS)}", ("failover", "order", j))
            if name in section.order[:j]:
                raise self.fail(f"{name!r} is listed twice", ("failover", "order", j))
        given = {k: v for k, v in section.model_dump().items() if v is not None}
        return FailoverConfig(**{**given, "order": tuple(section.order)})

    def _items(
        self, inline: list[Any], mapping_lines: dict[int, int], prompts_file: str | None,
        builder: ItemBuilder,
    ) -> tuple[Item, ...]:
        self.n_inline = len(inline)  # every entry makes one item, or an error
        for i, raw in enumerate(inline):
            try:
                item, explicit = builder.build(raw, mapping_lines.get(id(raw)))
            except EntryError as e:
                raise self.fail(e.message, e.at or ("prompts", i, *e.key)) from None
            if (taken := self._register(item, explicit)) is not None:
                raise self.fail(taken, ("prompts", i, "id"))
        if prompts_file is not None:
            self._file_items(prompts_file, builder)
        if not self.items:
            raise self.fail("no prompts: add a prompts list or a prompts_file", ())
        self._check_numbered_names()
        return tuple(self.items)

    def _file_items(self, name: str, builder: ItemBuilder) -> None:
        at = ("prompts_file",)
        path = self.base / name
        self.file_display = display = str(Path(self.display).parent / name)
        if path.suffix.lower() not in SUFFIXES:
            raise self.fail(f"must name a .csv, .jsonl or .ndjson file, got {shown(name)}", at)
        if not path.is_file():
            raise self.fail(f"prompts file {shown(name)} not found (looked for {path})", at)
        line = None
        try:
            for line, raw in read_rows(path, display):
                try:
                    item, explicit = builder.build(raw, line)
                except EntryError as e:
                    if e.at is not None:
                        raise self.fail(e.message, e.at) from None
                    raise ManifestError(e.message, file=display, line=line,
                                        field=format_path(e.key) or None) from None
                if (taken := self._register(item, explicit)) is not None:
                    raise ManifestError(taken, file=display, line=line, field="id")
        except OSError as e:
            raise ManifestError(f"cannot read the prompts file: {e.strerror or e}", file=display,
                                line=line) from None

    def _register(self, item: Item, explicit: bool) -> str | None:
        """Record an item; if its id is taken, return what to tell the user instead."""
        key = item.id.lower()
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = (len(self.items), explicit)
            self.items.append(item)
            return None
        there = self._where(first[0])
        if not explicit and not first[1]:
            return (f"two prompts have the same text and no id, so both would get the id "
                    f"{item.id!r} (first at {there}); give them explicit ids")
        return (f"duplicate id {item.id!r} (first used at {there}; ids are compared ignoring "
                "case because they become file names)")

    def _where(self, index: int) -> str:
        source = self.display if index < self.n_inline else self.file_display
        return f"{source}:{self.items[index].line}"

    def _check_numbered_names(self) -> None:
        """`shoe` with count 3 saves shoe-1 … shoe-3: no other id may be one of those."""
        for index, item in enumerate(self.items):
            m = _NUMBERED_RE.fullmatch(item.id)
            if m is None or (base := self.seen.get(m[1].lower())) is None:
                continue
            other, k = self.items[base[0]], int(m[2])
            if other.count > 1 and k <= other.count:
                message = (f"id {item.id!r} names the same file as image {k} of {other.id!r} "
                           f"(count: {other.count}, first at {self._where(base[0])}); "
                           "rename one of them")
                if index < self.n_inline:
                    raise self.fail(message, ("prompts", index, "id"))
                raise ManifestError(message, file=self.file_display, line=item.line, field="id")


def apply_overrides(
    manifest: Manifest,
    *,
    provider: str | None = None,
    interval: Interval | None = None,
    concurrency: int | None = None,
    out: Path | None = None,
) -> Manifest:
    """The manifest with command-line flags applied (flags beat the manifest). UsageError
    when a flag cannot apply, e.g. a provider with no model to fall back on."""
    changes: dict[str, Any] = {}
    if provider is not None:
        changes["providers"], changes["items"] = _switch_provider(manifest, provider)
    if interval is not None or concurrency is not None:
        if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
            raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
        changes["pacing"] = replace(
            manifest.pacing,
            interval=manifest.pacing.interval if interval is None else interval,
            concurrency=manifest.pacing.concurrency if concurrency is None else concurrency,
        )
    if out is not None:
        changes["output"] = Path(out).resolve()
    return replace(manifest, **changes)


def _switch_provider(
    manifest: Manifest, provider: str
) -> tuple[dict[str, ProviderConfig], tuple[Item, ...]]:
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; known providers: {', '.join(PROVIDERS)}")
    providers = dict(manifest.providers)
    cfg = providers.setdefault(provider, ProviderConfig(provider))
    fallback = cfg.model or DEFAULT_MODEL.get(provider)
    # Models the manifest configures for another provider belong to it, even unknown ones.
    others = {c.model for n, c in providers.items() if c.model and n != provider} - {cfg.model}
    items = []
    for item in manifest.items:
        model = item.model
        if not serves(provider, model) or model in others:
            if fallback is None:
                raise UsageError(f"--provider {provider}: {item.id!r} uses {model}, which "
                                 f"{provider} cannot serve, and no {provider} model is known; "
                                 f"set providers.{provider}.model in the manifest")
            model = fallback
            info = MODELS.get(model)
            if info is not None and (
                item.aspect_ratio not in (None, *info.aspect_ratios)
                or item.image_size not in (None, *info.image_sizes)
            ):
                raise UsageError(f"--provider {provider}: {item.id!r} asks for "
                                 f"{item.aspect_ratio or '-'} / {item.image_size or '-'}, which "
                                 f"{model} does not support")
        items.append(item if (item.provider, item.model) == (provider, model)
                     else replace(item, provider=provider, model=model))
    return providers, tuple(items)
