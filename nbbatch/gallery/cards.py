"""One GalleryEntry -> the compact record the page's script renders as a card, plus the
counts and costs shown at the top of the page.

Records use short keys and leave out empty fields: at 10,000 images every byte of a key is
10 KB of page. Links are relative to OUT with each path segment percent-encoded, so a file
name can neither leave the folder nor turn into a scheme ("javascript:") or a query.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from nbbatch.gallery.entries import STATUSES, GalleryEntry

Card = dict[str, Any]


def card_for(entry: GalleryEntry) -> Card:
    if entry.status not in STATUSES:
        raise ValueError(f"image {entry.id}#{entry.index}: unknown status {entry.status!r}")
    fields: Card = {
        "id": entry.id,
        "ix": entry.index,
        "of": entry.count,
        "st": entry.status,
        "pr": entry.prompt,
        "pv": entry.provider,
        "md": entry.model,
        "usd": entry.cost_usd if entry.status == "done" else None,
        "at": entry.attempts,
        "ek": entry.error_kind if entry.status != "done" else None,
        "em": entry.error_message if entry.status != "done" else None,
        "job": entry.batch_job if entry.status == "pending" else None,
        "jst": entry.batch_state if entry.status == "pending" else None,
    }
    if entry.status == "done" and entry.file:
        parts = safe_parts(entry.file)
        if parts is None:
            fields["np"] = "the file is recorded outside the output folder"
        else:
            fields["href"] = url_of(parts)
    return {key: value for key, value in fields.items() if value is not None}


def safe_parts(relative: str) -> tuple[str, ...] | None:
    """The path segments of a file recorded relative to OUT, or None when the path is
    absolute or climbs out of OUT (the page links only inside its own folder)."""
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or not path.parts or any(p in ("..", ".") for p in path.parts):
        return None
    if ":" in path.parts[0] and len(path.parts[0]) == 2:  # "C:" - a Windows drive
        return None
    return path.parts


def url_of(parts: tuple[str, ...]) -> str:
    return "/".join(quote(part, safe="") for part in parts)


@dataclass
class Totals:
    """Counts by status and provider, and the cost of the images on disk."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_provider: Counter[str] = field(default_factory=Counter)  # "" = not sent yet
    cost_on_disk_usd: float = 0.0

    def add(self, entry: GalleryEntry) -> None:
        self.by_status[entry.status] += 1
        self.by_provider[entry.provider or ""] += 1
        if entry.status == "done" and entry.cost_usd:
            self.cost_on_disk_usd += entry.cost_usd

    @property
    def total(self) -> int:
        return sum(self.by_status.values())
