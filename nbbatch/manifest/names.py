"""Ids are file names: no two images of a manifest may land on the same file.

Ids are compared ignoring case (case-insensitive file systems), and `shoe` with `count: 3`
claims shoe-1 … shoe-3, so no other item may be called one of those.
"""

from __future__ import annotations

import re

from nbbatch.model import Item

_NUMBERED_RE = re.compile(r"(.+)-([1-9][0-9]{0,2})")


class IdRegistry:
    """The items of a manifest in order, with the first place each id was used."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.sources: list[str] = []  # file each item came from, for messages
        self._seen: dict[str, tuple[int, bool]] = {}  # lower-case id -> (index, explicit id)

    def add(self, item: Item, explicit: bool, source: str) -> str | None:
        """Record an item; if its id is taken, return what to tell the user instead."""
        key = item.id.lower()
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = (len(self.items), explicit)
            self.items.append(item)
            self.sources.append(source)
            return None
        there = self.where(first[0])
        if not explicit and not first[1]:
            return (f"two prompts have the same text and no id, so both would get the id "
                    f"{item.id!r} (first at {there}); give them explicit ids")
        return (f"duplicate id {item.id!r} (first used at {there}; ids are compared ignoring "
                "case because they become file names)")

    def where(self, index: int) -> str:
        return f"{self.sources[index]}:{self.items[index].line}"

    def numbered_clashes(self) -> tuple[int, str] | None:
        """The first item whose id names the same file as a numbered image of another item,
        as (its index, the message); None when there is none."""
        if all(item.count == 1 for item in self.items):  # no numbered images: no clash
            return None
        for index, item in enumerate(self.items):
            m = _NUMBERED_RE.fullmatch(item.id)
            if m is None or (base := self._seen.get(m[1].lower())) is None:
                continue
            other, k = self.items[base[0]], int(m[2])
            if other.count > 1 and k <= other.count:
                return index, (f"id {item.id!r} names the same file as image {k} of "
                               f"{other.id!r} (count: {other.count}, first at "
                               f"{self.where(base[0])}); rename one of them")
        return None
