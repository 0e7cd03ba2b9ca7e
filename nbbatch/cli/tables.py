"""The `status` and `plan` tables on a terminal, and `status` as plain lines for a pipe.

Every cell is built as Rich `Text` from `printable` strings: an id, an error message or a
path is shown as it is, never read as markup or acted on by the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from nbbatch.text import clock_parts, printable

if TYPE_CHECKING:  # type names only: `status` must not load what a plan needs
    from nbbatch.engine.plan import Plan, PlanChecks
    from nbbatch.engine.status import ShownImage
    from nbbatch.store.batch_jobs import JobRecord

STATE_STYLE = {"done": "green", "failed": "red", "pending": "yellow", "missing": "magenta"}
COLUMNS = ("id", "#", "status", "provider", "model", "tries", "file / error")
TERMINAL_ROWS = 50  # rows a table shows on a terminal; pipes get every row


def status_table(images: Iterable[ShownImage], *, limit: int = TERMINAL_ROWS,
                 total: int | None = None, more_hint: str = "", wide: bool = False) -> Table:
    """Images as a table; `wide` adds each one's prompt."""
    table = Table(show_lines=False)
    for column in _columns(wide):
        table.add_column(column, overflow="fold")
    shown = 0
    for image in images:
        if shown == limit:
            break
        row = image.row
        cells = [Text(printable(row.id)), Text(str(row.index)),
                 Text(image.state, style=STATE_STYLE[image.state]),
                 Text(printable(row.provider or "")), Text(printable(row.model or "")),
                 Text(str(row.attempts)), Text(printable(image.detail))]
        if wide:
            cells.insert(1, Text(printable(row.prompt or "")))
        table.add_row(*cells)
        shown += 1
    if total is not None and total > shown:
        table.caption = f"{total - shown} more not shown{more_hint}"
    return table


def status_lines(images: Iterable[ShownImage], *, wide: bool = False) -> Iterator[str]:
    """One tab-separated line per image, header first: whatever the width, `grep ID` finds
    every row whole."""
    yield "\t".join(_columns(wide))
    for image in images:
        row = image.row
        cells = [row.id, str(row.index), image.state, row.provider or "", row.model or "",
                 str(row.attempts), image.detail]
        if wide:
            cells.insert(1, row.prompt or "")
        # One check in C for the usual row, whose every character shows as it is.
        yield "\t".join(cells if "".join(cells).isprintable() else map(printable, cells))


def _columns(wide: bool) -> list[str]:
    return [COLUMNS[0], "prompt", *COLUMNS[1:]] if wide else list(COLUMNS)


def plan_table(plan: Plan, *, interval: str, concurrency: int) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    parts = clock_parts(plan.estimated_seconds)
    took = "more than 100 days" if parts is None else \
        "{}h {:02d}m {:02d}s (plus one request's latency)".format(*parts)
    rows = [
        ("prompts", str(plan.items)),
        ("images", str(plan.images)),
        ("already done", str(plan.done)),
        ("failed (kept)", str(plan.failed)),
        ("to generate", str(plan.pending)),
        ("per provider", ", ".join(f"{k}: {v}" for k, v in plan.by_provider.items()) or "-"),
        ("pacing", f"one request every {interval} s per provider, up to {concurrency} in flight"),
        ("estimated time", took),
        ("estimated cost", f"${plan.estimated_cost:.2f}"),
    ]
    if plan.mode == "batch":
        rows[-3:] = [
            ("mode", "batch: jobs of many images, half the price"),
            ("estimated time", "within 24 hours of submission, usually much sooner"),
            ("estimated cost", f"${plan.estimated_cost:.2f} at the batch price "
                               f"(online: ${plan.online_cost:.2f})"),
        ]
    if plan.missing:
        rows.insert(4, ("files missing", f"{plan.missing} (made again)"))
    if plan.shape_changes:
        what = ("wait for their primary (failover.same_shape)" if plan.same_shape else
                "would change shape if a backup made them (failover.same_shape: true keeps "
                "them for the primary)")
        rows.append(("shape on backup", f"{plan.shape_changes} items {what}"))
        rows += [("", example) for example in plan.shape_examples]
        if plan.shape_changes > len(plan.shape_examples):
            rows.append(("", f"… and {plan.shape_changes - len(plan.shape_examples)} more"))
    for key, value in rows:
        table.add_row(key, Text(printable(value)))
    return table


def checks_lines(result: PlanChecks) -> list[str]:
    """What `plan` says of each provider's pre-flight."""
    lines = []
    for check in result.checks:
        role = "" if check.items else " (backup)"
        if check.passed:
            state = "ok"
        elif check.unavailable:
            state = f"not checked ({check.unavailable}); the first request will tell"
        else:
            state = check.error.message if check.error else "refused"
        lines.append(f"pre-flight: {check.provider}{role} {check.model}: {state}")
    lines += [f"pre-flight: skipped {reason}" for reason in result.skipped]
    return lines


def batch_jobs_table(jobs: Sequence[JobRecord], *, limit: int = 20) -> Table:
    """Batch jobs, open ones first, newest first: name, state and counts."""
    table = Table(title="batch jobs", show_lines=False)
    for column in ("job", "provider", "model", "state", "images", "done", "failed"):
        table.add_column(column, overflow="fold")
    ordered = sorted(jobs, key=lambda j: (not j.open, -j.job_id))
    for job in ordered[:limit]:
        cells = (job.name or job.display_name, job.provider, job.model, _job_state(job),
                 str(job.request_count), str(job.succeeded), str(job.failed))
        table.add_row(*(Text(printable(cell)) for cell in cells))
    if len(ordered) > limit:
        table.caption = f"{len(ordered) - limit} older jobs not shown (status --json lists all)"
    return table


def batch_job_lines(jobs: Sequence[JobRecord]) -> Iterator[str]:
    """The jobs as tab-separated lines, for a pipe."""
    yield "\t".join(("job", "provider", "model", "state", "images", "done", "failed"))
    for job in sorted(jobs, key=lambda j: (not j.open, -j.job_id)):
        cells = (job.name or job.display_name, job.provider, job.model, _job_state(job),
                 str(job.request_count), str(job.succeeded), str(job.failed))
        yield "\t".join(printable(cell) for cell in cells)


def _job_state(job: JobRecord) -> str:
    if job.open:
        return job.state or "creating"
    return f"collected: {job.outcome}" if job.outcome != "not created" else "not created"
