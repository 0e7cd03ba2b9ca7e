"""Everything nbbatch keeps on disk for a run: the ledger, the image files, the folder lock,
and (outside the output folder) which folder each working directory used last."""

from __future__ import annotations

from pathlib import Path

from nbbatch.errors import UsageError
from nbbatch.store.ledger import Ledger, LedgerView

LEDGER_FILE = "ledger.db"

__all__ = ["LEDGER_FILE", "Ledger", "LedgerView", "open_for_reading"]


def open_for_reading(out: Path) -> LedgerView:
    """The ledger of the run in `out`, for commands that only read it."""
    path = out / LEDGER_FILE
    if not path.exists():
        raise UsageError(f"no nbbatch run in {out}: {path} does not exist")
    return LedgerView.open(path)
