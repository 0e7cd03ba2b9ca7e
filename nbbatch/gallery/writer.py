"""write_gallery: the ledger's images -> OUT/thumbnails/* (new ones only) and OUT/gallery.html.

Entries are read once, as a stream: each becomes a compact card record at once (the entry
itself is not kept), and the thumbnails still missing are collected as jobs. Then the jobs run
in a thread pool, the page is written atomically, and what is no longer referenced is tidied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from nbbatch.errors import StorageError
from nbbatch.gallery.cards import Card, Totals, card_for, safe_parts
from nbbatch.gallery.entries import GalleryEntry, GalleryResult
from nbbatch.gallery.files import atomic_write, is_temp_name, remove_old_files
from nbbatch.gallery.page import PageHeader, render_page
from nbbatch.gallery.thumbnails import ThumbnailFolder, make_thumbnails, thumbnail_name
from nbbatch.store.atomic import fsync_folder

GALLERY_FILE = "gallery.html"


def write_gallery(
    out: Path,
    entries: Iterable[GalleryEntry],
    *,
    title: str | None = None,
    spent_usd: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> GalleryResult:
    """Write OUT/gallery.html for `entries`, making the thumbnails that do not exist yet.

    `on_progress(done, total)` is called in the calling thread, with (0, total) before the
    first thumbnail and after each one; it is not called when every thumbnail exists.
    `spent_usd`, when given, is shown beside the cost of the images on disk (it includes
    failed and replaced attempts). `workers` defaults to the number of CPUs.
    Raises StorageError (UnsafeFolderError for a linked thumbnails folder) when OUT or its
    files cannot be written; an image that cannot be read is a failed thumbnail, not an error.
    """
    if not out.is_dir():
        raise StorageError(f"{out} is not a folder")
    thumbnails = ThumbnailFolder(out)
    existing = thumbnails.prepare()
    totals = Totals()
    cards: list[Card] = []
    referenced: set[str] = set()
    jobs: dict[str, tuple[Path, list[Card]]] = {}  # thumbnail name -> (image, its cards)
    for entry in entries:
        card = card_for(entry)
        cards.append(card)
        totals.add(entry)
        parts = safe_parts(entry.file) if "href" in card and entry.file else None
        name = thumbnail_name(entry.sha256)
        if parts is None:
            continue
        if name is None:
            card["np"] = "the ledger has no SHA-256 for this file"
            continue
        referenced.add(name)
        if name in existing:
            card["th"] = thumbnails.url(name)
        elif name in jobs:  # the same bytes saved twice: one thumbnail serves both
            jobs[name][1].append(card)
        else:
            jobs[name] = (out.joinpath(*parts), [card])

    names = list(jobs)
    outcomes = make_thumbnails(
        [(jobs[name][0], thumbnails.target(name)) for name in names],
        workers=workers, on_progress=on_progress,
    )
    errors: list[str] = []
    for name, reason in zip(names, outcomes, strict=True):
        source, waiting = jobs[name]
        for card in waiting:
            if reason is None:
                card["th"] = thumbnails.url(name)
            else:
                card["np"] = reason
        if reason is not None:
            errors.append(f"{source.relative_to(out).as_posix()}: {reason}")
    if jobs:
        fsync_folder(thumbnails.path)

    header = PageHeader(title or f"nbbatch gallery: {out.resolve().name}", totals, spent_usd)
    html = render_page(header, cards).encode("utf-8", errors="replace")
    path = out / GALLERY_FILE
    atomic_write(path, html)
    fsync_folder(out)
    # Tidying comes last and only after the page no longer references what it removes.
    thumbnails.prune(referenced)
    remove_old_files(out, lambda n: is_temp_name(n, lambda final: final == GALLERY_FILE))
    return GalleryResult(
        path=path,
        images=totals.total,
        done=totals.by_status["done"],
        failed=totals.by_status["failed"],
        pending=totals.by_status["pending"],
        thumbnails_made=sum(reason is None for reason in outcomes),
        thumbnails_failed=sum(1 for c in cards if c["st"] == "done" and "th" not in c),
        page_bytes=len(html),
        thumbnail_errors=tuple(errors),
    )
