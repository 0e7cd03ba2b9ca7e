"""The gallery of a run's output folder, read from its ledger (opened for reading only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from nbbatch.gallery.entries import GalleryEntry, GalleryResult
from nbbatch.gallery.writer import write_gallery
from nbbatch.store import open_for_reading
from nbbatch.store.ledger import LedgerView


def ledger_entries(ledger: LedgerView) -> Iterator[GalleryEntry]:
    """One entry per image of the manifest, in manifest order, streamed."""
    waiting = dict(ledger.batch.memberships())  # images in live batch jobs: usually few
    for row in ledger.rows():
        done = row.status == "done"
        member = waiting.get((row.id, row.index))
        yield GalleryEntry(
            id=row.id, index=row.index, count=row.count or 1, status=row.status,
            prompt=row.prompt, provider=row.provider, model=row.model,
            cost_usd=row.cost_usd if done else None, attempts=row.attempts,
            file=row.file if done else None, sha256=row.sha256 if done else None,
            error_kind=None if done else row.error_kind,
            error_message=None if done else row.error_message,
            batch_job=member.job if member else None,
            batch_state=member.state if member else None,
        )


def update_gallery(out: Path, *,
                   on_progress: Callable[[int, int], None] | None = None) -> GalleryResult:
    """Write OUT/gallery.html from the ledger in OUT, making only the missing thumbnails."""
    with open_for_reading(out) as ledger:
        spent = ledger.cost_summary().spent.usd
        return write_gallery(out, ledger_entries(ledger), title=out.name, spent_usd=spent,
                             on_progress=on_progress)
