"""The manifest's YAML layer: safe loading, the section schema, and where each node sits.

Prompt entries are not validated here: there can be 100,000 of them, and plain functions in
manifest_items.py check them faster with the same precise messages. This module checks the
handful of sections around them (pydantic, unknown keys forbidden, no type coercion).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_MANIFEST_BYTES = 50 * 1024 * 1024

PROVIDERS = ("gemini", "vertex", "openai", "simulator")
ENTRY_FIELDS = (
    "id", "prompt", "provider", "model", "aspect_ratio", "image_size", "count", "images",
)
DEFAULT_FIELDS = ("provider", "model", "aspect_ratio", "image_size", "count")

# ---------------------------------------------------------------------------- safe YAML


class DocumentError(Exception):
    """A YAML problem at a 1-based line (None when unknown)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """safe_load semantics, plus: no aliases, text keys only, no duplicate keys.

    Aliases are refused outright: they are how a "billion laughs" document expands a few
    lines into billions of nodes, and a manifest has no need for them. Every mapping's
    start line is kept (by object id) so prompt entries know their line for free.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.mapping_lines: dict[int, int] = {}

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:  # only an alias reaches a node twice
            raise DocumentError(
                "YAML aliases (*name) are not allowed in a manifest, as they can expand a small "
                "file into billions of values: the value anchored (&name) here is reused; write "
                "it out in full where it is needed",
                node.start_mark.line + 1,
            )
        return super().construct_object(node, deep)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise DocumentError("expected a mapping", node.start_mark.line + 1)
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise DocumentError(
                    f"keys must be text, got {kind_of(key)} {key!r} (YAML reads yes/no/on/off "
                    "as true/false and 1:2 as a number: quote the key)",
                    line,
                )
            if key in key_lines:
                raise DocumentError(
                    f"duplicate key {key!r} (first on line {key_lines[key]})", line
                )
            key_lines[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_map(self, node: MappingNode) -> Any:
        data: dict[Any, Any] = {}
        self.mapping_lines[id(data)] = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)


def load_yaml(text: str) -> tuple[Any, dict[int, int]]:
    """Parse `text`; return the data and {id(mapping): line}. Raises DocumentError."""
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.mapping_lines
    except DocumentError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or "malformed YAML"
        if "constructor for the tag" in problem:
            problem += " (a manifest is plain YAML: language-specific tags are not allowed)"
        elif e.context and e.context != problem:
            problem = f"{problem} ({e.context})"
        raise DocumentError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from e
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        pos = getattr(e, "position", None)
        line = text.count("\n", 0, pos) + 1 if isinstance(pos, int) else None
        reason = getattr(e, "reason", None) or "malformed YAML"
        raise DocumentError(f"invalid YAML: {reason}", line) from e
    except RecursionError as e:
        raise DocumentError("invalid YAML: nested too deeply", None) from e
    finally:
        loader.dispose()


class NodeLines:
    """Line numbers of nodes by path, from yaml.compose. Built only when an error needs one."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: Node | None = None
        self._composed = False

    def line(self, path: tuple[Any, ...]) -> int | None:
        """Line of the node at `path` (a key's own line for mapping keys), or of the deepest
        existing node on the way there (a missing key reports its mapping's line)."""
        if not self._composed:
            self._composed = True
            try:
                self._root = yaml.compose(self._text, Loader=_BaseLoader)
            except (yaml.YAMLError, RecursionError):
                self._root = None
        node, line = self._root, None
        if node is not None:
            line = node.start_mark.line + 1
        for step in path:
            if isinstance(node, MappingNode):
                for key_node, value_node in node.value:
                    if getattr(key_node, "value", None) == str(step):
                        node, line = value_node, key_node.start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, SequenceNode) and isinstance(step, int):
                if not 0 <= step < len(node.value):
                    return line
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line


# ---------------------------------------------------------------------------- sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ProviderSchema(_Section):
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: float | None = Field(None, gt=0)
    model: str | None = None


class VertexSchema(ProviderSchema):
    project: str | None = None
    location: str | None = None


class OpenAISchema(ProviderSchema):
    # The same choices as nbbatch.providers.openai.OPTION_CHOICES.
    quality: Literal["auto", "low", "medium", "high"] | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    moderation: Literal["auto", "low"] | None = None
    input_fidelity: Literal["low", "high"] | None = None
    organization: str | None = None
    project: str | None = None


class SimulatorSchema(ProviderSchema):
    latency: Any = None  # an interval: 7, "5-10" or [5, 10]; checked by manifest.py
    faults: Any = None  # "503=0.3,429=0.1" as for `nbbatch simulate`, or a mapping; see manifest.py
    daily_quota: int | None = Field(None, ge=0)
    seed: int | None = None


class ProvidersSchema(_Section):
    gemini: ProviderSchema | None = None
    vertex: VertexSchema | None = None
    openai: OpenAISchema | None = None
    simulator: SimulatorSchema | None = None


class PacingSchema(_Section):
    interval: Any = None  # checked by manifest.parse_interval
    concurrency: int | None = Field(None, ge=1)


class RetrySchema(_Section):
    max_attempts: int | None = Field(None, ge=1)
    initial_delay: float | None = Field(None, ge=0)
    max_delay: float | None = Field(None, ge=0)


class FailoverSchema(_Section):
    order: list[str] = Field(min_length=1)
    trip_after: int | None = Field(None, ge=1)
    probe_every: float | None = Field(None, gt=0)


class ManifestSchema(_Section):
    version: int | None = None
    output: str | None = None
    defaults: Any = None  # checked with the prompt-entry rules in manifest.py
    providers: ProvidersSchema | None = None
    pacing: PacingSchema | None = None
    retry: RetrySchema | None = None
    failover: FailoverSchema | None = None
    prompts: list[Any] | None = None
    prompts_file: str | None = None


_KIND_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "finite_number": "a finite number",
}
_SECRET_FIELDS = {"api_key_env"}


class SectionError(Exception):
    """The first problem pydantic found, as (path, message) in nbbatch's words."""

    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def validate_sections(data: Mapping[str, Any]) -> ManifestSchema:
    """The sections of a manifest, checked. Raises SectionError."""
    try:
        return ManifestSchema.model_validate(data)
    except ValidationError as exc:
        raise SectionError(*_describe(exc.errors(include_url=False)[0])) from None


def _describe(err: Any) -> tuple[tuple[Any, ...], str]:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    got = "" if loc and loc[-1] in _SECRET_FIELDS else f" {shown(value)}"
    if kind == "extra_forbidden":
        name, parent = loc[-1], loc[:-1]
        if parent == ("providers",):
            return loc, f"unknown provider {name!r}; known providers: {', '.join(PROVIDERS)}"
        allowed = ", ".join(allowed_keys(parent))
        hint = ""
        if len(parent) == 2 and parent[0] == "providers":
            owners = [p for p in PROVIDERS if name in allowed_keys(("providers", p))]
            hint = f" ({name!r} is an option of {' and '.join(owners)} only)" if owners else ""
        return loc, f"unknown key {name!r}; allowed keys here: {allowed}{hint}"
    if kind == "missing":
        return loc, "required"
    if kind in _KIND_NAMES:
        return loc, f"must be {_KIND_NAMES[kind]}, got {kind_of(value)}{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, int | float) else bound
        return loc, f"must be {op} {bound}, got{got}"
    if kind == "too_short":
        return loc, "must not be empty"
    if kind == "literal_error":
        return loc, f"must be one of {ctx.get('expected', '?')}, got{got}"
    return loc, f"{err['msg']}{',' if got else ''}{got}"


def allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = ManifestSchema
    for step in loc:
        if step == "defaults" and model is ManifestSchema:
            return list(DEFAULT_FIELDS)
        field = model.model_fields.get(step) if isinstance(step, str) else None
        if field is None:
            return []
        model = next(
            (t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
             if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
        if model is None:
            return []
    return list(model.model_fields)


def kind_of(value: Any) -> str:
    """How a YAML/JSON value reads to a user: 'text', 'an integer', 'a list'…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {
        str: "text", int: "an integer", float: "a number", list: "a list", dict: "a mapping",
    }.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """repr() for messages, cut short: a value may be a whole document."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_path(loc: tuple[Any, ...]) -> str:
    """('prompts', 2, 'count') -> 'prompts[2].count'."""
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out
