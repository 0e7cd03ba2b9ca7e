"""The manifest's YAML layer: safe loading, and the line where each node sits.

safe_load semantics with three refusals (aliases, non-text keys, duplicate keys), and line
numbers found without composing the document twice on the happy path.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from nbbatch.text import kind_of

MAX_MANIFEST_BYTES = 50 * 1024 * 1024


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
