"""How a run ended: its summary, and the one function that picks the exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nbbatch.engine.budget import Stop
from nbbatch.errors import ExitCode, FatalError
from nbbatch.store.records import CostSummary, Counts, Spend


@dataclass(frozen=True)
class RunSummary:
    counts: Counts
    cost: CostSummary  # the folder: images on disk, every run's spending, what is left
    run_spend: Spend  # this run alone
    exit_code: ExitCode
    stop: Stop | None
    requests: int
    done_this_run: int
    failed_this_run: int
    elapsed: float
    gallery: Path | None = None  # OUT/gallery.html when this run brought it up to date
    submitted: int = 0  # batch mode: images sent in new jobs this run
    jobs_open: int = 0  # batch mode: jobs still live at the end (collected by a later run)
    in_jobs: int = 0  # images waiting in those jobs
    retries: int = 0
    watcher_error: str | None = None  # whoever watched the events failed; the run went on

    @property
    def stop_reason(self) -> str | None:
        return self.stop.message if self.stop else None


def exit_code_for(counts: Counts, *, interrupted: ExitCode | None, fatal: FatalError | None,
                  all_dropped: bool, stuck_on_fatal: int = 0, defect: bool = False) -> ExitCode:
    """A signal wins; then a defect in nbbatch that stopped the run; then a fatal answer (a
    rejected key, an unknown model) that stopped the run or left images with no provider to
    take them; then what is left."""
    if interrupted:
        return interrupted
    if defect:
        return ExitCode.SOFTWARE
    if fatal and (all_dropped or stuck_on_fatal):
        return fatal.exit_code
    if counts.pending:
        return ExitCode.TEMPFAIL
    if counts.failed:
        return ExitCode.FAILED
    return ExitCode.OK
