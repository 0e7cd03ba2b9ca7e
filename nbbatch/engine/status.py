"""`nbbatch status --json`: the status document, streamed one image per line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TextIO

from nbbatch.store.batch_jobs import JobRecord
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
    stream.write(f'  "batch_jobs": {json.dumps([job_json(j) for j in ledger.batch.jobs()])},\n')
    stream.write('  "items": [')
    separator = "\n    "
    waiting = dict(ledger.batch.memberships())  # only images in open jobs: usually few
    for row in ledger.rows():
        item = item_json(row)
        member = waiting.get((row.id, row.index))
        item["batch"] = None if member is None else {
            "job": member.job, "state": member.state, "submitted_at": iso(member.submitted_at)}
        stream.write(separator + json.dumps(item))
        separator = ",\n    "
    stream.write("\n  ]\n}\n")


def job_json(job: JobRecord) -> dict[str, Any]:
    return {"job": job.name, "display_name": job.display_name, "provider": job.provider,
            "model": job.model, "phase": job.phase, "state": job.state,
            "images": job.request_count, "succeeded": job.succeeded, "failed": job.failed,
            "submitted_at": iso(job.submitted_at), "closed_at": iso(job.closed_at),
            "outcome": job.outcome, "error": job.error}


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


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
