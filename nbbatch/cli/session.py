"""A run as the user watches it: the live display or plain log lines, then the summary, the
images that need attention and what to do next."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nbbatch.cli.console import display_path, make_console
from nbbatch.cli.exits import say_error
from nbbatch.cli.live import LiveDisplay
from nbbatch.cli.logs import LogLines
from nbbatch.cli.summary import ATTENTION_LIMIT, run_lines
from nbbatch.errors import ExitCode, MissingKeyError, UsageError
from nbbatch.settings import Settings

# How to go on without a key, in words the command at hand accepts.
NO_KEY_HINT = {
    "run": "To try nbbatch offline without a key, add --provider simulator.",
    "resume": "Set it and run nbbatch resume again; to try nbbatch offline without a key: "
              "nbbatch run MANIFEST --provider simulator",
}


def start(settings: Settings, *, command: str, quiet: bool, verbose: bool) -> int:
    from nbbatch.engine.plan import model_warnings
    from nbbatch.engine.run import run_batch
    from nbbatch.store import open_for_reading, recent

    for warning in model_warnings(settings.manifest):
        say_error(warning, "warning")
    cwd = Path.cwd()
    recent.remember(cwd, settings.out, os.environ)
    live = sys.stdout.isatty() and not quiet
    verbosity = 0 if quiet else 2 if verbose else 1
    reporter: LiveDisplay | LogLines = (
        LiveDisplay(make_console(), verbosity=verbosity) if live
        else LogLines(sys.stdout, verbosity=verbosity))
    with reporter:
        try:
            summary = run_batch(settings, env=os.environ, cwd=cwd, on_event=reporter)
        except MissingKeyError as exc:
            raise UsageError(f"{exc.message} {NO_KEY_HINT[command]}") from None
    out = display_path(settings.out)
    with open_for_reading(settings.out) as ledger:
        attention = ledger.needing_attention(ATTENTION_LIMIT)
    labels = {item.id: item.count for item in settings.manifest.items}
    gallery = display_path(summary.gallery) if summary.gallery else None
    for line in run_lines(summary, out=out, manifest=display_path(settings.manifest.path),
                          attention=attention, labels=labels, gallery=gallery):
        reporter.say(line.text, line.level)
    if summary.exit_code in (ExitCode.AUTH, ExitCode.USAGE) and summary.stop_reason:
        say_error(summary.stop_reason)
    if live and summary.done_this_run:
        reporter.say(f"images in {out}/images, ledger {out}/ledger.db")
    return summary.exit_code
