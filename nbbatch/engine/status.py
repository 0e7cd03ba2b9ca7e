"""`nbbatch status`: what the ledger says, as views and as the JSON document.

A done image whose file is gone (or has another size than recorded) is shown as `missing`:
the next run makes it again. Telling costs one stat per done image shown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from nbbatch.store.batch_jobs import JobRecord
from nbbatch.store.files import RecordedFiles
from nbbatch.store.ledger import LedgerView
from nbbatch.store.lock import current_holder
from nbbatch.store.records import Counts, ImageRow
from nbbatch.text import clock_parts


class View(StrEnum):
    ALL = "all"
    FAILED = "failed"
    PENDING = "pending"


class ShownImage(NamedTuple):  # one per image shown: a tuple is the cheapest to build
    row: ImageRow
    state: str  # done | failed | pending | missing
    detail: str  # the file, or what went wrong


def shown(row: ImageRow, files: RecordedFiles) -> ShownImage:
    if row.status == "done":
        problem = files.problem(row.file, row.bytes)
        if problem:
            return ShownImage(row, "missing", f"{problem}; the next run makes it again")
        note = f" (shape changed: {row.shape_note})" if row.shape_note else ""
        return ShownImage(row, "done", (row.file or "") + note)
    detail = f"{row.error_kind}: {row.error_message}" if row.error_kind else ""
    return ShownImage(row, row.status, detail)


def images(ledger: LedgerView, out: Path, view: View = View.ALL) -> Iterator[ShownImage]:
    """The images of a view in manifest order; the whole view shows failed and pending
    ones first (they are what needs attention), then the done ones."""
    rows = ledger.rows(attention_first=True) if view == View.ALL else ledger.rows(view.value)
    files = RecordedFiles(out)
    return (shown(row, files) for row in rows)


def run_state(ledger: LedgerView, out: Path, now: float | None = None) -> str:
    """The line at the top of `status`: a run in progress, or how the last one ended."""
    holder = current_holder(out)
    if holder:
        return f"a run is in progress ({holder})"
    last = ledger.last_run()
    if last is None:
        return "no run recorded yet"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.started_at))
    if last.finished_at is None or last.exit_code is None:
        return f"last run: started {started}, did not finish (killed or crashed)"
    took = _duration(last.finished_at - last.started_at)
    return f"last run: started {started}, took {took}, exit {last.exit_code}"


def _duration(seconds: float) -> str:
    if (parts := clock_parts(seconds + 0.5)) is None:  # a clock set far back, say
        return "more than 100 days"
    hours, minutes, secs = parts
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes \
        else f"{secs}s"


def write_status_json(ledger: LedgerView, stream: TextIO, *, out: str,
                      manifest: str | None, folder: Path | None = None) -> None:
    """100,000 images need neither the whole document in memory nor the slow indenting
    encoder: the head is written key by key, then one line per image."""
    counts, cost = ledger.counts(), ledger.cost_summary()
    spent = cost.spent
    head = {
        "out": out,
        "manifest": manifest,
        "counts": counts_json(counts),
        "cost_usd": round(cost.on_disk_usd, 6),
        "spent_usd": round(spent.usd, 6),
        "possibly_spent_usd": round(spent.possibly_usd, 6),
        "possibly_billed": {"interrupted": spent.interrupted, "lost": spent.lost},
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
    files = RecordedFiles(folder) if folder is not None else None
    for row in ledger.rows():
        item = item_json(row)
        member = waiting.get((row.id, row.index))
        item["batch"] = None if member is None else {
            "job": member.job, "state": member.state, "submitted_at": iso(member.submitted_at)}
        if files is not None and row.status == "done":
            item["missing"] = files.problem(row.file, row.bytes) is not None
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
        "missing": False,
        "size": [row.width, row.height] if done and row.width and row.height else None,
        "shape_changed": row.shape_note if done else None,
    }
