"""The manifest's sections checked straight into the value types they become (model.py).

One set of classes: `build_section(PacingConfig, raw, at)` validates each key of a section
against the dataclass field of that name — its type and the bounds declared on it — and
returns the frozen dataclass. pydantic checks each value strictly (no "3" for 3, no true
for 1); the messages are nbbatch's own and name the path of the offending key.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from nbbatch.model import Interval, parse_interval
from nbbatch.text import kind_of, shown

_STRICT = ConfigDict(strict=True, allow_inf_nan=False)
_SECRET_FIELDS = frozenset({"api_key_env"})  # a pasted key must not be echoed back
_KIND_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "finite_number": "a finite number",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
           "less_than": "<"}


class SectionError(Exception):
    """The first problem in a section, as (path, message) in nbbatch's words."""

    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def section_keys(cls: type, exclude: tuple[str, ...] = ()) -> list[str]:
    """The keys a section may have: its dataclass's fields, in order."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in exclude]


def build_section(cls: Any, raw: Any, at: tuple[Any, ...], *,
                  exclude: tuple[str, ...] = (), **given: Any) -> Any:
    """`cls` from the mapping `raw` found at path `at`; `given` supplies the excluded
    fields. A key set to null keeps its default. Raises SectionError."""
    keys = section_keys(cls, exclude)
    if not isinstance(raw, dict):
        raise SectionError(at, f"must be a mapping of {', '.join(keys)}, got {kind_of(raw)} "
                               f"{shown(raw)}")
    for key in raw:
        if key not in keys:
            raise SectionError((*at, key), f"unknown key {key!r}; allowed keys here: "
                                           f"{', '.join(keys)}")
    hints = _hints(cls)
    values = {key: check_value(hints[key], value, (*at, key))
              for key, value in raw.items() if value is not None}
    for f in dataclasses.fields(cls):
        if f.name not in values and f.name not in given and _required(f):
            raise SectionError((*at, f.name), "required")
    return cls(**values, **given)


def check_value(annotation: Any, value: Any, at: tuple[Any, ...]) -> Any:
    """`value` checked against a field's annotation (Interval and tuples converted first)."""
    if annotation is Interval or Interval in typing.get_args(annotation):
        try:
            return parse_interval(value)
        except ValueError as exc:
            raise SectionError(at, str(exc)) from None
    if _is_tuple(annotation) and isinstance(value, list):
        value = tuple(value)
    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise SectionError((*at, *error["loc"]), _describe(error, at)) from None


def _describe(error: Any, at: tuple[Any, ...]) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = "" if at and at[-1] in _SECRET_FIELDS else f" {shown(value)}"
    if kind in _KIND_NAMES:
        return f"must be {_KIND_NAMES[kind]}, got {kind_of(value)}{got}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, int | float) else bound
        return f"must be {_BOUNDS[kind]} {bound}, got{got}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}, got{got}"
    return f"{error['msg']}{',' if got else ''}{got}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation, config=_STRICT)


def _is_tuple(annotation: Any) -> bool:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) is tuple


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
