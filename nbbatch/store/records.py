"""What the ledger holds, as frozen rows: images, attempts, runs, counts, costs.

The two rows made once per image (100,000 of them for a large manifest) are named tuples,
which Python builds ten times faster than frozen dataclasses; the rest are dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from nbbatch.store.connection import json_cell

Key = tuple[str, int]  # (item id, index 1..count)


# `index` and `count` name fields here, as everywhere in nbbatch; on these tuples they hide
# the tuple methods of those names, which nothing uses.


class PlannedImage(NamedTuple):
    id: str
    index: int  # type: ignore[assignment]
    fingerprint: str
    position: int  # order in the manifest
    estimate_usd: float = 0.0  # what making it is expected to cost
    # What a ledger written before prompts were normalised may know it by (None: the same).
    legacy_id: str | None = None
    legacy_fingerprint: str | None = None


class ImageRow(NamedTuple):
    id: str
    index: int  # type: ignore[assignment]
    fingerprint: str
    status: str  # "pending" | "done" | "failed"
    provider: str | None
    model: str | None
    attempts: int  # requests ever made for this image, all runs
    file: str | None
    sha256: str | None
    bytes: int | None
    cost_usd: float | None
    error_kind: str | None
    error_message: str | None
    position: int
    updated_at: float | None
    usage: dict | None
    prompt: str | None = None  # what it was asked for (None in ledgers older than schema 3)
    count: int | None = None  # type: ignore[assignment]  # its item's count (None likewise)
    width: int | None = None  # pixels of the image made
    height: int | None = None
    shape_note: str | None = None  # how its shape differs from what was asked, if it does


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: float  # unix time
    provider: str
    model: str
    outcome: str  # success | transient | blocked | invalid | quota | fatal | interrupted
    http_status: int | None = None
    latency: float | None = None
    error: str | None = None
    possibly_billed: bool = False  # may have been charged without a saved image
    cost_usd: float = 0.0  # estimated cost of this attempt if billed


@dataclass(frozen=True, slots=True)
class SyncResult:
    new: int
    changed: int
    unchanged: int
    removed: int


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    done: int
    failed: int
    pending: int


@dataclass(frozen=True, slots=True)
class Spend:
    """Money that went out: every successful request, plus the requests that may have been
    billed without giving an image (counted at the most they may have cost)."""

    billed_usd: float = 0.0  # successful requests, whether or not their image is still kept
    interrupted: int = 0  # requests cut off by a stop (Ctrl-C, SIGTERM) while in flight
    interrupted_usd: float = 0.0
    lost: int = 0  # answers lost after sending: timeouts, cut-off or unreadable answers
    lost_usd: float = 0.0

    @property
    def possibly_usd(self) -> float:
        return self.interrupted_usd + self.lost_usd

    @property
    def possibly_billed(self) -> int:
        return self.interrupted + self.lost

    @property
    def usd(self) -> float:
        """Spent, counting every possibly billed request as billed."""
        return self.billed_usd + self.possibly_usd


@dataclass(frozen=True, slots=True)
class CostSummary:
    """What the images now in the folder cost, apart from what was spent to get there
    (images made again after a prompt changed were paid for twice)."""

    on_disk_usd: float  # the done images of the manifest
    done_images: int
    spent: Spend  # every run on this folder
    remaining_usd: float = 0.0  # estimate for the pending images

    @property
    def possibly_spent_usd(self) -> float:
        return self.spent.possibly_usd


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: int
    started_at: float
    finished_at: float | None
    manifest: str
    options: dict | None  # None: the record is damaged
    cwd: str
    pid: int
    exit_code: int | None
    settings: dict | None = None  # the effective manifest (schema 3 and later)


@dataclass(frozen=True, slots=True)
class SaveIntent:
    id: str
    index: int
    file: str
    sha256: str


IMAGES = "images LEFT JOIN items ON items.id = images.id"  # each image with its request
IMAGE_COLUMNS = (
    "images.id, images.idx, images.fingerprint, images.status, images.provider, images.model,"
    " images.attempts, images.file, images.sha256, images.bytes, images.cost_usd,"
    " images.error_kind, images.error_message, images.position, images.updated_at,"
    " images.usage, items.prompt, items.count, images.width, images.height, images.shape_note"
)
ATTEMPT_COLUMNS = (
    "started_at, provider, model, outcome, http_status, latency, error, possibly_billed, cost_usd"
)
# Field names in column order (the table's "idx" is the row's "index").
_IMAGE_FIELDS = [name.strip().split(".")[-1].replace("idx", "index")
                 for name in IMAGE_COLUMNS.split(",")]
_ATTEMPT_FIELDS = [name.strip() for name in ATTEMPT_COLUMNS.split(",")]

_USAGE = _IMAGE_FIELDS.index("usage")


def image_row(row: tuple[Any, ...]) -> ImageRow:
    """An ImageRow from the IMAGE_COLUMNS of one row (usage is JSON; a damaged cell reads as
    no report). The columns come in the order of ImageRow's fields (a test checks it):
    positional, for 100,000 rows."""
    usage = row[_USAGE]
    if usage is None:
        return ImageRow._make(row)
    values = list(row)
    report = json_cell(usage)
    values[_USAGE] = report if isinstance(report, dict) else None
    return ImageRow._make(values)


def attempt_row(row: tuple[Any, ...]) -> Attempt:
    """An Attempt from the ATTEMPT_COLUMNS of one row."""
    fields = dict(zip(_ATTEMPT_FIELDS, row, strict=True))
    return Attempt(**{**fields, "possibly_billed": bool(fields["possibly_billed"])})
