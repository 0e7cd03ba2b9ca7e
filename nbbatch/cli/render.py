"""What the user sees: a Rich live progress bar on a terminal, plain timestamped lines
otherwise (cron, pipes), and the plan, status and summary tables. Only the cli package
imports Rich."""

from __future__ import annotations

import sys
import time
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.table import Table
from rich.text import Text

from nbbatch.engine.events import Event, EventKind, Level, Progress
from nbbatch.engine.summary import RunSummary

STATUS_STYLE = {"done": "green", "failed": "red", "pending": "yellow"}
MAX_TABLE_ROWS = 50


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Reporter:
    """Receives runner events. `verbosity`: 0 quiet, 1 normal, 2 verbose."""

    def __init__(self, console: Console, *, live: bool, verbosity: int = 1,
                 stream: IO[str] | None = None) -> None:
        self.console = console
        self.live = live and verbosity > 0
        # Plain lines: quiet shows warnings, normal adds progress, verbose every request.
        # Under a live bar, progress is the bar itself: only warnings, or everything.
        if self.live:
            self.min_level = 0 if verbosity > 1 else 2
        else:
            self.min_level = {0: 2, 1: 1, 2: 0}[verbosity]
        self.stream = stream or sys.stdout
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Reporter:
        if self.live:
            self._bar = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("starting", total=None, counts="", rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()

    def __call__(self, event: Event, progress: Progress) -> None:
        if self._bar is not None:
            self._update_bar(progress)
            # Batch jobs change state a few times a run: each change is worth a line.
            shown = event.kind == EventKind.BATCH_JOB and self.min_level <= Level.WARNING
            if event.level >= self.min_level or shown:
                style = {Level.WARNING: "yellow", Level.ERROR: "bold red"}.get(event.level, "")
                self._bar.console.print(event.message, style=style, markup=False, highlight=False)
            return
        if event.level >= self.min_level:
            counts = ""
            if event.kind in (EventKind.DONE, EventKind.FAILED):
                counts = f" [{progress.done}/{progress.total} done, {progress.failed} failed]"
            line = f"{timestamp()} {event.level.name:7} {event.message}{counts}"
            print(line, file=self.stream, flush=True)

    def _update_bar(self, p: Progress) -> None:
        assert self._bar is not None and self._task is not None
        elapsed = max(time.monotonic() - p.started_at, 1e-6)
        rate = p.done_this_run / elapsed * 60
        providers = " ".join(f"{name}:{state}" for name, state in p.providers.items())
        counts = f"done {p.done} failed {p.failed} pending {p.pending} in flight {p.in_flight}"
        if p.jobs_open:
            counts += f" - {p.in_jobs} in {p.jobs_open} batch job{'s' if p.jobs_open > 1 else ''}"
        self._bar.update(
            self._task, description=providers, total=p.total, completed=p.done + p.failed,
            counts=counts, rate=f"{rate:.1f}/min",
        )


def print_summary(console: Console, summary: RunSummary, *, plain: bool) -> None:
    c, cost = summary.counts, summary.cost
    text = (
        f"{c.done} done, {c.failed} failed, {c.pending} pending of {c.total} "
        f"- {summary.done_this_run} made this run with {summary.requests} requests "
        f"in {summary.elapsed:.1f}s; spent ~${cost.spent_usd:.3f}"
    )
    if cost.possibly_spent_usd:
        text += f" (+ up to ${cost.possibly_spent_usd:.3f} for requests that timed out)"
    if c.pending:
        text += f"; the {c.pending} pending will cost ~${cost.remaining_usd:.3f}"
    if summary.submitted or summary.jobs_open:
        text += (f"; batch: {summary.submitted} submitted this run, {summary.in_jobs} waiting "
                 f"in {summary.jobs_open} live job{'s' if summary.jobs_open != 1 else ''}")
    if summary.stop_reason:
        text += f"\nstopped: {summary.stop_reason}"
    if summary.gallery:
        text += f"\ngallery: {summary.gallery}"
    if plain:
        print(f"{timestamp()} INFO    {text}", flush=True)
    else:
        console.print(text, markup=False, highlight=False)


def status_table(rows, *, limit: int = MAX_TABLE_ROWS, wide: bool = False) -> Table:
    """Images, failed and pending first (they are what needs attention)."""
    table = Table(show_lines=False)
    columns = ["id", "#", "status", "provider", "model", "tries", "file / error"]
    if wide:
        columns.insert(1, "prompt")
    for column in columns:
        table.add_column(column, overflow="fold")
    ordered = sorted(rows, key=lambda r: {"failed": 0, "pending": 1, "done": 2}[r.status])
    for row in ordered[:limit]:
        detail = row.file if row.status == "done" else (
            f"{row.error_kind}: {row.error_message}" if row.error_kind else "")
        cells = [Text(row.id), Text(str(row.index)),
                 Text(row.status, style=STATUS_STYLE[row.status]), Text(row.provider or ""),
                 Text(row.model or ""), Text(str(row.attempts)), Text(detail or "")]
        if wide:
            cells.insert(1, Text(row.prompt or ""))
        table.add_row(*cells)
    if len(ordered) > limit:
        table.caption = f"{len(ordered) - limit} more images not shown (use --json for all)"
    return table


def counts_line(counts, cost) -> str:
    text = (f"total {counts.total}: {counts.done} done, {counts.failed} failed, "
            f"{counts.pending} pending; spent ~${cost.spent_usd:.3f}")
    if cost.possibly_spent_usd:
        text += f" (+ up to ${cost.possibly_spent_usd:.3f} possibly billed)"
    if counts.pending:
        text += f"; pending ones ~${cost.remaining_usd:.3f} more"
    return text


def plan_table(plan, *, interval: str, concurrency: int) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    minutes, seconds = divmod(int(plan.estimated_seconds), 60)
    hours, minutes = divmod(minutes, 60)
    rows = [
        ("prompts", str(plan.items)),
        ("images", str(plan.images)),
        ("already done", str(plan.done)),
        ("failed (kept)", str(plan.failed)),
        ("to generate", str(plan.pending)),
        ("per provider", ", ".join(f"{k}: {v}" for k, v in plan.by_provider.items()) or "-"),
        ("pacing", f"one request every {interval} s per provider, up to {concurrency} in flight"),
        ("estimated time", f"{hours}h {minutes:02d}m {seconds:02d}s (plus one request's latency)"),
        ("estimated cost", f"${plan.estimated_cost:.2f}"),
    ]
    if plan.mode == "batch":
        rows[-3:] = [
            ("mode", "batch: jobs of many images, half the price"),
            ("estimated time", "within 24 hours of submission, usually much sooner"),
            ("estimated cost", f"${plan.estimated_cost:.2f} at the batch price "
                               f"(online: ${plan.online_cost:.2f})"),
        ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def checks_lines(result) -> list[str]:
    """What `plan` says of each provider's pre-flight."""
    lines = []
    for check in result.checks:
        role = "" if check.items else " (backup)"
        if check.passed:
            state = "ok"
        elif check.unavailable:
            state = f"not checked ({check.unavailable}); the first request will tell"
        else:
            state = check.error.message
        lines.append(f"pre-flight: {check.provider}{role} {check.model}: {state}")
    lines += [f"pre-flight: skipped {reason}" for reason in result.skipped]
    return lines


class ThumbnailProgress:
    """A progress bar for making thumbnails, shown on a terminal once there are many."""

    SHOW_FROM = 50  # fewer are made in a blink: no bar

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console, self.live = console, live
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None and self.live and total >= self.SHOW_FROM:
            self._bar = RichProgress(TextColumn("thumbnails"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("thumbnails", total=total)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def __enter__(self) -> ThumbnailProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
def batch_jobs_table(jobs, *, limit: int = 20) -> Table:
    """Batch jobs, open ones first, newest first: name, state and counts."""
    table = Table(title="batch jobs", show_lines=False)
    for column in ("job", "provider", "model", "state", "images", "done", "failed"):
        table.add_column(column, overflow="fold")
    ordered = sorted(jobs, key=lambda j: (not j.open, -j.job_id))
    for job in ordered[:limit]:
        state = job.state or "creating"
        if not job.open:
            state = f"collected: {job.outcome}" if job.outcome != "not created" else "not created"
        # What the provider says is text, never markup.
        cells = (job.name or job.display_name, job.provider, job.model, state,
                 str(job.request_count), str(job.succeeded), str(job.failed))
        table.add_row(*(Text(cell) for cell in cells))
    if len(ordered) > limit:
        table.caption = f"{len(ordered) - limit} older jobs not shown (status --json lists all)"
    return table
