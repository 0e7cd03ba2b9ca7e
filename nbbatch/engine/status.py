"""`nbbatch status --json`: the status document, streamed one image per line."""

from __future__ import annotations

import json
from typing import Any, TextIO

from nbbatch.store.ledger import LedgerView
from nbbatch.store.records import Counts, ImageRow


def write_status_json(ledger: LedgerView, stream: TextIO, *, out: str,
                      manifest: str | None) -> None:
    """100,000 images need neither the whole document in memory nor the slow indenting
    encoder: the head is written key by key, then one line per image."""
    counts, cost = ledger.counts(), ledger.cost_summary()
    head = {
        "out": out,
        "manifest": manifest,
        "counts": counts_json(counts),
        "cost_usd": round(cost.spent_usd, 6),
        "possibly_spent_usd": round(cost.possibly_spent_usd, 6),
        "remaining_estimate_usd": round(cost.remaining_usd, 6),
        "by_provider": {name: counts_json(c)
                        for name, c in ledger.counts_by_provider().items() if name},
    }
    stream.write("{\n")
    for key, value in head.items():
        stream.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
    stream.write('  "items": [')
    separator = "\n    "
    for row in ledger.rows():
        stream.write(separator + json.dumps(item_json(row)))
        separator = ",\n    "
    stream.write("\n  ]\n}\n")


def counts_json(counts: Counts) -> dict[str, int]:
    return {"total": counts.total, "done": counts.done, "failed": counts.failed,
            "pending": counts.pending}


def item_json(row: ImageRow) -> dict[str, Any]:
    error = {"kind": row.error_kind, "message": row.error_message} if row.error_kind else None
    done = row.status == "done"
    return {
        "id": row.id, "index": row.index, "status": row.status, "prompt": row.prompt,
        "provider": row.provider, "model": row.model, "attempts": row.attempts,
        "file": row.file if done else None,
        "sha256": row.sha256 if done else None,
        "error": error if not done else None,
    }
