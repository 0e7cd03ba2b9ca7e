"""Which file an image is saved as: its own name when that is free, never another's.

An image is named after its id (`ID.png`, `ID-2.png` for count > 1). That name may already be
taken: by another image the ledger holds (a dropped `shoe` with `count: 2` owns `shoe-1.jpg`
that a new item `shoe-1` would also be called; names are compared ignoring case, as on a
case-insensitive file system), or by a file nbbatch did not write there (the user's own
`hero.jpg`, or every image after the ledger was moved away). Neither is ever written over:
the image takes the next free name, `ID~2.png`, `ID~3.png`… — `~` appears in no id, so such
a name is never another image's own — and the caller says why. A file that holds exactly the
bytes being saved is that image already, and is adopted as it is.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbbatch.errors import StorageError
from nbbatch.store.records import Key

MAX_ALTERNATIVES = 1000  # ID~2 … ID~1000: past that, something else is wrong

Owner = Callable[[str], tuple[Key, str] | None]  # name -> (image, SHA-256 it was written with)


@dataclass(frozen=True)
class Placement:
    relative: str  # "images/ID.png", or an alternative when that was taken
    passed_over: str | None = None  # why the image's own name was not used


def choose_name(images: Path, wanted: str, key: Key, sha256: str, owner: Owner) -> Placement:
    """Where to save `key`'s image with hash `sha256`, wanted as `wanted` ("ID.png") in the
    folder `images`. `owner` says which image the ledger has placed at a name, if any."""
    stem, _, extension = wanted.rpartition(".")
    passed_over = None
    for n in range(1, MAX_ALTERNATIVES + 1):
        name = wanted if n == 1 else f"{stem}~{n}.{extension}"
        relative = f"{images.name}/{name}"
        problem = _taken(images / name, relative, key, sha256, owner)
        if problem is None:
            return Placement(relative, passed_over)
        passed_over = passed_over or problem
    raise StorageError(f"no free name for {images.name}/{wanted}: {passed_over} and so are "
                       f"{stem}~2 to ~{MAX_ALTERNATIVES}")


def _taken(path: Path, relative: str, key: Key, sha256: str, owner: Owner) -> str | None:
    """Why `path` may not receive this image, or None when it may."""
    held = owner(relative)
    on_disk = _file_hash(path)
    if held is not None and held[0] != key:
        return f"{relative} belongs to image {held[0][0]} #{held[0][1]} in the ledger"
    if on_disk is None or on_disk == sha256:
        return None  # free, or already these very bytes
    if held is not None and on_disk == held[1]:
        return None  # this image's own earlier file, as the ledger wrote it: replaced
    what = "is not one nbbatch wrote" if held is None else "was changed since nbbatch wrote it"
    return f"{relative} {what} (it is not in the ledger as it is now); it is kept"


def _file_hash(path: Path) -> str | None:
    """SHA-256 of the regular file at `path`; None when nothing is there; "" for anything
    that is not a regular file (a folder, a link), which no image may replace."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot look at {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        return ""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
