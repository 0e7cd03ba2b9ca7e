"""`nbbatch status` on a terminal (a table) or into a pipe (one line per image, no wrapping),
with the run in progress or the last run's end at the top and the counts and money below."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.text import Text

from nbbatch.cli.console import display_path, make_console
from nbbatch.cli.summary import counts_text, money_lines
from nbbatch.cli.tables import batch_job_lines, batch_jobs_table, status_lines, status_table
from nbbatch.engine.status import View, images, run_state, write_status_json
from nbbatch.store import open_for_reading
from nbbatch.text import printable


def show_status(folder: Path, *, view: View, summary_only: bool, as_json: bool,
                wide: bool = False) -> None:
    shown_out = display_path(folder)
    with open_for_reading(folder) as ledger:
        last = ledger.last_run()
        manifest = display_path(Path(last.manifest)) if last else None
        if as_json:
            write_status_json(ledger, sys.stdout, out=shown_out, manifest=manifest,
                              folder=folder)
            return
        console = make_console()

        def say(text: str) -> None:
            console.print(Text(printable(text)))

        say(run_state(ledger, folder))
        counts = ledger.counts()
        if not summary_only:
            rows = images(ledger, folder, view)
            if console.is_terminal:
                selected = {View.ALL: counts.total, View.FAILED: counts.failed,
                            View.PENDING: counts.pending}[view]
                hint = f" (all of them: nbbatch status {shown_out} | less)"
                console.print(status_table(rows, total=selected, more_hint=hint, wide=wide))
            else:
                for text in status_lines(rows, wide=wide):
                    sys.stdout.write(text + "\n")
        jobs = ledger.batch.jobs()
        if jobs and console.is_terminal:
            console.print(batch_jobs_table(jobs))
        elif jobs:
            for text in batch_job_lines(jobs):
                sys.stdout.write(text + "\n")
        say(f"{counts.total} images: {counts_text(counts).rsplit(' of ', 1)[0]}")
        for line in money_lines(ledger.cost_summary(), counts):
            say(line.text)
        for name, c in sorted(ledger.counts_by_provider().items()):
            if name:
                say(f"  {name}: {c.done} done, {c.failed} failed")
        say(f"out: {shown_out}  manifest: {manifest}")
