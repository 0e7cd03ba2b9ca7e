"""Thumbnails: one small WebP per image under OUT/thumbnails/, made once, in a thread pool.

A thumbnail is named after the SHA-256 of its image, so an unchanged image is never redone
and a replaced one gets a new thumbnail. Decoding is the cost: JPEG is decoded at a reduced
scale (`draft`), and Pillow releases the GIL while it decodes, resizes and encodes, so a
thread pool uses every core. Only PNG, JPEG and WebP are opened (the formats nbbatch
saves), and an image over Pillow's pixel limit is refused before it is decoded.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from nbbatch.errors import StorageError, UnsafeFolderError
from nbbatch.gallery.files import atomic_write, is_temp_name, remove_old_files

THUMBNAILS_DIR = "thumbnails"
THUMBNAIL_BOX = (320, 320)
WEBP_QUALITY = 80  # about 10-30 KB for a 320 px photo-like image
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
_NAME = re.compile(r"[0-9a-f]{32}\.webp")
_SHA256 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int, int], None]


class ThumbnailError(Exception):
    """This image gets no thumbnail; the message says why, for the page and the log."""


def thumbnail_name(sha256: str | None) -> str | None:
    """`<first 32 hex digits of the image's SHA-256>.webp`, or None for a malformed hash
    (which must never become part of a file name)."""
    digest = (sha256 or "").lower()
    return f"{digest[:32]}.webp" if _SHA256.fullmatch(digest) else None


def is_thumbnail_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


class ThumbnailFolder:
    """OUT/thumbnails/: what is there, where new thumbnails go, what is no longer needed."""

    def __init__(self, out: Path) -> None:
        self.path = out / THUMBNAILS_DIR

    def prepare(self) -> set[str]:
        """Create the folder if needed; return the names of the thumbnails already made."""
        if self.path.is_symlink():
            raise UnsafeFolderError(
                f"{self.path} is a symbolic link: thumbnails would be written outside the "
                "output folder; remove the link and run again"
            )
        try:
            self.path.mkdir(exist_ok=True)
            listing = list(os.scandir(self.path))
        except FileExistsError:
            raise UnsafeFolderError(
                f"{self.path} is a file, not a folder; move it away and run again"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot use {self.path}: {exc.strerror}") from exc
        return {entry.name for entry in listing if is_thumbnail_name(entry.name)}

    def target(self, name: str) -> Path:
        return self.path / name

    @staticmethod
    def url(name: str) -> str:
        return f"{THUMBNAILS_DIR}/{name}"

    def prune(self, referenced: set[str]) -> int:
        """Remove old thumbnails no image references any more (their image was replaced)
        and temporary files a killed writer left. Nothing else is ever touched."""
        def stale(name: str) -> bool:
            if is_thumbnail_name(name):
                return name not in referenced
            return is_temp_name(name, is_thumbnail_name)

        return remove_old_files(self.path, stale)


def make_thumbnail(source: Path, target: Path) -> None:
    """Write a WebP thumbnail of `source` at `target`; raise ThumbnailError if impossible."""
    try:
        with Image.open(source, formats=ACCEPTED_FORMATS) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and image.width * image.height > limit:
                raise ThumbnailError(f"too many pixels ({image.width}x{image.height})")
            # JPEG only: decode at 1/2 … 1/8 scale, still at least twice the thumbnail size.
            image.draft("RGB", (THUMBNAIL_BOX[0] * 2, THUMBNAIL_BOX[1] * 2))
            small = _web_mode(image)
            small.thumbnail(THUMBNAIL_BOX)
            ImageOps.exif_transpose(small, in_place=True)
            encoded = BytesIO()
            small.save(encoded, "WEBP", quality=WEBP_QUALITY, method=4)
    except ThumbnailError:
        raise
    except FileNotFoundError:
        raise ThumbnailError("the file is missing") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ThumbnailError("too many pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ThumbnailError("not a PNG, JPEG or WebP image") from None
    except Exception as exc:
        # A damaged file makes Pillow raise nearly anything (OSError, SyntaxError, struct
        # errors…); whatever it is, this image goes without a thumbnail and the page is made.
        raise ThumbnailError(f"cannot decode it ({type(exc).__name__}: {exc})") from None
    try:
        atomic_write(target, encoded.getvalue())
    except StorageError as exc:
        raise ThumbnailError(str(exc)) from None


def _web_mode(image: Image.Image) -> Image.Image:
    # Palette and grey images are converted before resizing: resizing a palette image
    # would fall back to nearest-neighbour and look ragged.
    if image.mode in ("RGB", "RGBA"):
        return image
    alpha = image.mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def _attempt(source: Path, target: Path) -> str | None:
    try:
        make_thumbnail(source, target)
    except ThumbnailError as exc:
        return str(exc)
    return None


def make_thumbnails(jobs: Sequence[tuple[Path, Path]], *, workers: int | None = None,
                    on_progress: Progress | None = None) -> list[str | None]:
    """Make a thumbnail for each (source, target); the answer holds, job by job, None for a
    thumbnail made or the reason it could not be. At most two jobs per worker are queued,
    so no more decoded images are in memory than the pool is working on."""
    results: list[str | None] = [None] * len(jobs)
    if not jobs:
        return results
    workers = max(1, workers or os.cpu_count() or 2)
    queue = iter(range(len(jobs)))
    finished = 0
    if on_progress:
        on_progress(0, len(jobs))
    # Pillow warns (rather than raises) between its pixel limit and twice that. Warning
    # filters are process-wide and not thread-safe to change, so the filter is set once
    # here, around the whole pool, and the workers never touch it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnail") as pool:
            in_flight: dict[Future[str | None], int] = {}

            def submit(count: int) -> None:
                for index in queue:
                    in_flight[pool.submit(_attempt, *jobs[index])] = index
                    count -= 1
                    if count == 0:
                        return

            submit(2 * workers)
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    results[in_flight.pop(future)] = future.result()
                    finished += 1
                    if on_progress:
                        on_progress(finished, len(jobs))
                submit(len(done))
    return results
