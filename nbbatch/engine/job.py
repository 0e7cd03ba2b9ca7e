"""One image being made: the ledger row, its item, where it may go and where it went."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nbbatch.engine.steering import Lane
from nbbatch.model import Item
from nbbatch.store.records import ImageRow, Key


@dataclass(eq=False)  # identity-hashed: jobs live in a set
class ImageJob:
    row: ImageRow
    item: Item
    candidates: tuple[str, ...]  # providers that may make it, preferred first
    reserve: float = 0.0  # USD the budget holds back for it while it is under way
    lane: Lane | None = None  # the provider of the current (or last) attempt
    model: str = ""  # the model asked for in that attempt
    task: asyncio.Task[None] | None = None
    working: bool = False  # a request or a save under way: a graceful stop lets it finish
    backing_off: Lane | None = None  # waiting out a backoff after failing on this lane

    def end_backoff(self) -> None:
        if self.backing_off is not None:
            self.backing_off.backing_off -= 1
            self.backing_off = None

    @property
    def key(self) -> Key:
        return (self.row.id, self.row.index)

    @property
    def provider(self) -> str | None:
        return self.lane.name if self.lane else None

    @property
    def label(self) -> str:
        return self.item.label(self.row.index)
