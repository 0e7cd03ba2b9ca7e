"""Everything nbbatch keeps on disk for a run: the ledger, the image files, the folder lock,
and (outside the output folder) which folder each working directory used last."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nbbatch.errors import LedgerError, UsageError
from nbbatch.store.ledger import Ledger, LedgerView
from nbbatch.store.paths import kind_of_file

LEDGER_FILE = "ledger.db"

__all__ = ["LEDGER_FILE", "Ledger", "LedgerView", "find_ledger", "open_for_reading"]


def find_ledger(out: Path) -> Path | None:
    """OUT/ledger.db when there is one, None when there is none; LedgerError when it cannot
    be looked at (no access, a name too long) or is not a file."""
    path = out / LEDGER_FILE
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        why = exc.strerror if isinstance(exc, OSError) else exc
        raise LedgerError(f"cannot read the ledger {path}: {why}") from None
    if not stat.S_ISREG(mode):
        raise LedgerError(f"{path} is {kind_of_file(mode)}, not an nbbatch ledger; move it "
                          "away or choose another output folder")
    return path


def open_for_reading(out: Path) -> LedgerView:
    """The ledger of the run in `out`, read-only, for commands that only read it."""
    path = find_ledger(out)
    if path is None:
        raise UsageError(f"no nbbatch run in {out}: {out / LEDGER_FILE} does not exist")
    return LedgerView.open(path, read_only=True)
