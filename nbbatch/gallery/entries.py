"""What the gallery is given and what it answers: one GalleryEntry per image of the ledger,
one GalleryResult per page written. Plain values, no I/O: the ledger adapts to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("done", "failed", "pending")


@dataclass(frozen=True, slots=True)
class GalleryEntry:
    id: str
    index: int
    count: int  # images the item asks for (the page shows "#2 of 3" when > 1)
    status: str  # "done" | "failed" | "pending"
    prompt: str | None
    provider: str | None
    model: str | None
    cost_usd: float | None  # cost of this image when done
    attempts: int
    file: str | None  # relative to OUT, e.g. "images/red-sneaker.jpg" (done only)
    sha256: str | None  # of the file (done only); names its thumbnail
    error_kind: str | None  # failed: blocked/invalid; pending: the last error's kind
    error_message: str | None
    batch_job: str | None = None  # the provider's job name while the image sits in a live job
    batch_state: str | None = None


@dataclass(frozen=True, slots=True)
class GalleryResult:
    path: Path  # OUT/gallery.html
    images: int  # entries on the page
    done: int
    failed: int
    pending: int
    thumbnails_made: int  # made by this call; existing ones are reused, never redone
    thumbnails_failed: int  # done images shown without a thumbnail (missing or undecodable)
    page_bytes: int
    # One line per failed thumbnail, "images/x.png: why", for the CLI to show or log.
    thumbnail_errors: tuple[str, ...] = field(default=())
