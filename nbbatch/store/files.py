"""Image files in the output folder: their names, atomic writes, and crash recovery.

An image is written to a temporary name in the same folder, flushed, fsynced and renamed into
place, so no reader ever sees half an image. The temporary name carries the image's hash, so
after a crash the ledger's save intent tells a finished temporary file from a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path

from nbbatch.errors import StorageError, UnsafeFolderError

IMAGES_DIR = "images"
TEMP_SUFFIX = ".tmp"


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

    def prepare(self) -> None:
        # Checked before mkdir too: a dangling link would otherwise read as "File exists".
        self._check_images_folder()
        try:
            self.images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.images}: {exc.strerror}") from exc
        self._check_images_folder()

    def _check_images_folder(self) -> None:
        if self.images.is_symlink() or (
            self.images.exists() and not self.images.resolve().is_relative_to(self.out.resolve())
        ):
            raise UnsafeFolderError(
                f"{self.images} is a symbolic link: images would be written outside the output "
                "folder; remove the link and run again"
            )
        if self.images.exists() and not self.images.is_dir():
            raise UnsafeFolderError(
                f"{self.images} is a file, not a folder; move it away and run again"
            )

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
        temp = self._temp_path(final, sha256)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            raise StorageError(f"cannot write {final}: {exc.strerror}{hint}") from exc
        # The image is in place and its bytes are on disk. Syncing the folder only makes the
        # new name durable across a power cut; some file systems refuse it (EINVAL), and
        # failing here would leave a finished image that the ledger calls pending.
        with contextlib.suppress(OSError):
            _fsync_dir(final.parent)

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
            with contextlib.suppress(OSError):
                _fsync_dir(final.parent)
            return True
        return False

    def remove_temp_files(self) -> int:
        """Delete temporary files left by a crash; call only while holding the folder lock."""
        removed = 0
        if self.images.is_dir():
            for path in self.images.glob(f".*{TEMP_SUFFIX}"):
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    message = f"cannot remove the leftover {path}: {exc.strerror}"
                    raise StorageError(message) from exc
        return removed


def _file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
