"""Image files in the output folder: atomic writes, room to write, and crash recovery.

An image is written to a temporary name in the same folder, flushed, fsynced and renamed into
place, so no reader ever sees half an image. The temporary name carries the image's hash, so
after a crash the ledger's save intent tells a finished temporary file from a torn one; only
names of that exact shape are cleaned up at start-up (another program's `.x.tmp` is its own).
Which name an image takes is decided in naming.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from nbbatch.errors import StorageError
from nbbatch.store.atomic import fsync_folder, write_atomically
from nbbatch.store.paths import refuse_unsafe
from nbbatch.store.records import Key

IMAGES_DIR = "images"
TEMP_SUFFIX = ".tmp"
# .NAME.<16 hex of its SHA-256>.tmp, NAME being an image file name as nbbatch makes them.
TEMP_NAME = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._~-]*\.(?:png|jpg|webp|bin)\.[0-9a-f]{16}"
                       + re.escape(TEMP_SUFFIX))
MIN_FREE_BYTES = 16 * 2**20  # room checked for before a request: a 4K PNG is a few MB


def image_file_name(item_id: str, index: int, count: int, extension: str) -> str:
    """`ID.png` for a single image, `ID-1.png` … `ID-N.png` when the item asks for several."""
    stem = item_id if count == 1 else f"{item_id}-{index}"
    return f"{stem}.{extension}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RecordedFiles:
    """Whether the file a done image recorded is still there as recorded. One stat per image,
    on a prefix joined once: this runs for every image of a 100,000-image folder."""

    def __init__(self, out: Path) -> None:
        self._prefix = os.path.join(os.fspath(out), "")

    def problems(self, done: Iterable[tuple[Key, str | None, int | None]]) -> list[tuple[Key, str]]:
        """(key, why) for each of the `done` images (key, file, bytes) whose file is not there
        as recorded. The usual file, there at its size, costs one stat and nothing else."""
        stat, prefix, found = os.stat, self._prefix, []
        for key, relative, size in done:
            try:
                if relative and stat(prefix + relative).st_size == size:
                    continue
            except OSError:
                pass
            if why := self.problem(relative, size):
                found.append((key, why))
        return found

    def problem(self, relative: str | None, size: int | None) -> str | None:
        """Why the file is not there as recorded (gone, or another size), or None."""
        if not relative:
            return "no file is recorded"
        try:
            found = os.stat(self._prefix + relative).st_size
        except FileNotFoundError:
            return f"{relative} is missing"
        except OSError as exc:
            return f"{relative} cannot be read ({exc.strerror})"
        if size is not None and found != size:
            return f"{relative} has {found} bytes, the ledger recorded {size}"
        return None


class ImageStore:
    """Writes images under OUT/images/ and nowhere else."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.images = out / IMAGES_DIR
        self.largest = 0  # bytes of the largest image written: what the next may need

    def check_room(self) -> None:
        """Before paying for an image: StorageError when images/ could not take it now."""
        need = max(MIN_FREE_BYTES, 2 * self.largest)
        try:
            writable = os.access(self.images, os.W_OK | os.X_OK)
            fs = os.statvfs(self.images)
        except OSError as exc:
            raise StorageError(f"cannot write to {self.images}: {exc.strerror}") from None
        if not writable:
            raise StorageError(f"cannot write to {self.images}: permission denied")
        free = fs.f_bavail * fs.f_frsize
        if free < need:
            raise StorageError(f"only {free / 2**20:.1f} MB free on the disk of {self.images} "
                               f"(the disk is full; an image needs up to {need / 2**20:.0f} "
                               "MB): free some space and run again")

    def prepare(self) -> None:
        # Checked before mkdir too: a dangling link would otherwise read as "File exists".
        if not refuse_unsafe(self.images, folder=True):
            try:
                self.images.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create {self.images}: {exc.strerror}") from exc
            refuse_unsafe(self.images, folder=True)

    def relative(self, name: str) -> str:
        return f"{IMAGES_DIR}/{name}"

    def _path(self, relative: str) -> Path:
        path = self.out / relative
        if path.parent != self.images or path.name in ("", ".", ".."):
            raise StorageError(f"refusing to write {relative!r} outside {self.images}")
        return path

    def _temp_path(self, final: Path, sha256: str) -> Path:
        return final.with_name(f".{final.name}.{sha256[:16]}{TEMP_SUFFIX}")

    def write(self, relative: str, data: bytes, sha256: str) -> None:
        """Atomically place `data` at OUT/relative. Raises StorageError (disk full, no access)."""
        final = self._path(relative)
        write_atomically(final, self._temp_path(final, sha256), data)
        self.largest = max(self.largest, len(data))

    def recover(self, relative: str, sha256: str) -> bool:
        """Finish a save a crash interrupted. True when OUT/relative now holds those bytes."""
        final = self._path(relative)
        if _file_sha256(final) == sha256:
            return True
        temp = self._temp_path(final, sha256)
        if _file_sha256(temp) == sha256:
            try:
                os.replace(temp, final)
            except OSError as exc:
                raise StorageError(f"cannot finish saving {final}: {exc.strerror}") from exc
            fsync_folder(final.parent)
            return True
        return False

    def remove_temp_files(self) -> int:
        """Delete nbbatch's own temporary files left by a crash (nothing else: other programs
        keep theirs here too); call only while holding the folder lock."""
        removed = 0
        for name in self._temp_names():
            path = self.images / name
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove the leftover {path}: {exc.strerror}") from exc
        return removed

    def _temp_names(self) -> list[str]:
        """Names in images/ of nbbatch's temporary shape. The folder may hold 100,000 images:
        each name is looked at with two string tests in C, and only a candidate with the
        pattern."""
        try:
            names = os.listdir(self.images)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [name for name in names if name.startswith(".") and name.endswith(TEMP_SUFFIX)
                and TEMP_NAME.fullmatch(name)]


def _file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None

