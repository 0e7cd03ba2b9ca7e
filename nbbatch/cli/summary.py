"""What a run or a status says at the end, in words: counts, money, why it stopped, and what
to do next.

Money is told two ways, and says which is which: what was *spent* (every billed request,
including images made again later and requests that may have been billed without giving
an image) and what the images *on disk* cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nbbatch.engine.budget import StopKind
from nbbatch.engine.events import Level
from nbbatch.engine.summary import RunSummary
from nbbatch.errors import ExitCode
from nbbatch.store.records import CostSummary, Counts, ImageRow, Spend

ATTENTION_LIMIT = 20  # failed and pending images listed after a run


@dataclass(frozen=True)
class Line:
    text: str
    level: Level = Level.INFO


def usd(amount: float) -> str:
    return f"${amount:.3f}"


def images_text(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def counts_text(c: Counts) -> str:
    return f"{c.done} done · {c.failed} failed · {c.pending} pending of {c.total}"


def possibly_text(spend: Spend) -> str | None:
    """`of which up to $0.268 possibly billed: 2 interrupted, 1 timed out or cut off`:
    requests that may have been charged without giving an image."""
    parts = []
    if spend.interrupted:
        parts.append(f"{spend.interrupted} interrupted")
    if spend.lost:
        parts.append(f"{spend.lost} timed out or cut off")
    if not parts:
        return None
    return f"  of which up to {usd(spend.possibly_usd)} possibly billed: {', '.join(parts)}"


def money_lines(cost: CostSummary, counts: Counts) -> list[Line]:
    """The folder's money, for `status`."""
    text = (f"spent {usd(cost.spent.usd)} in all runs; the {images_text(cost.done_images)} "
            f"on disk cost {usd(cost.on_disk_usd)}")
    possibly = possibly_text(cost.spent)
    lines = [Line(text)] + ([Line(possibly)] if possibly else [])
    if counts.pending:
        lines.append(Line(f"the {counts.pending} pending will cost about "
                          f"{usd(cost.remaining_usd)}"))
    return lines


def run_lines(summary: RunSummary, *, out: str, manifest: str, attention: Sequence[ImageRow],
              labels: dict[str, int] | None = None, gallery: str | None = None) -> list[Line]:
    """Everything a run prints when it ends, one line each. `attention`: the first failed
    and pending images; `labels`: how many images each item id has (to name `id#2`);
    `gallery`: the page this run brought up to date."""
    c, s = summary.counts, summary
    retries = f" ({s.retries} retries)" if s.retries else ""
    lines = [Line(f"{counts_text(c)} - {s.done_this_run} made in {s.elapsed:.1f}s, "
                  f"{s.requests} requests{retries}")]
    cost = s.cost
    spent = (f"spent {usd(s.run_spend.usd)} this run ({usd(cost.spent.usd)} in all runs; "
             f"images on disk: {usd(cost.on_disk_usd)})")
    lines.append(Line(spent))
    possibly = possibly_text(s.run_spend)
    if possibly:
        lines.append(Line(possibly))
    if c.pending:
        lines.append(Line(f"the {c.pending} pending will cost about {usd(cost.remaining_usd)}"))
    if s.submitted or s.jobs_open:
        jobs = f"{s.jobs_open} live job{'s' if s.jobs_open != 1 else ''}"
        lines.append(Line(f"batch: {s.submitted} submitted this run, {s.in_jobs} waiting in "
                          f"{jobs}"))
    if s.stop and s.exit_code not in (ExitCode.AUTH, ExitCode.USAGE):
        lines.append(Line(f"stopped: {s.stop.message}", Level.WARNING))
    if gallery:
        lines.append(Line(f"gallery: {gallery}"))
    lines += _attention(attention, c, out, labels or {})
    lines += _next_step(summary, out=out, manifest=manifest)
    if s.watcher_error:
        lines.append(Line(f"the progress display failed ({s.watcher_error}); the run went on",
                          Level.WARNING))
    return lines


def label(row: ImageRow, labels: dict[str, int]) -> str:
    return row.id if labels.get(row.id, 1) == 1 else f"{row.id}#{row.index}"


def _attention(rows: Sequence[ImageRow], c: Counts, out: str,
               labels: dict[str, int]) -> list[Line]:
    lines = []
    for row in rows:
        why = f": {row.error_kind}: {row.error_message}" if row.error_kind else ""
        level = Level.WARNING if row.status == "failed" else Level.INFO
        lines.append(Line(f"  {row.status} {label(row, labels)}{why}", level))
    more = c.failed + c.pending - len(rows)
    if more > 0:
        lines.append(Line(f"  … and {more} more: nbbatch status {out}"))
    return lines


def _next_step(s: RunSummary, *, out: str, manifest: str) -> list[Line]:
    code = s.exit_code
    resume = f"nbbatch resume {out}"
    if code in (ExitCode.SIGINT, ExitCode.SIGTERM):
        return [Line(f"interrupted: nothing is lost; to continue: {resume}")]
    if code == ExitCode.TEMPFAIL:
        when = {StopKind.QUOTA: " when the quota resets",
                StopKind.MAX_COST: " (each run gets the same budget)",
                StopKind.MAX_IMAGES: " (each run gets the same budget)"}.get(
            s.stop.kind, " later") if s.stop else " later"
        return [Line(f"images are still pending; continue{when}: {resume}")]
    if code == ExitCode.FAILED:
        return [Line(f"{s.counts.failed} failed (blocked or invalid: nbbatch status {out} "
                     f"--failed); to try them again: nbbatch run {manifest} --retry-failed",
                     Level.WARNING)]
    return []
