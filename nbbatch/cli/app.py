"""The command line: parse options, build settings, call the engine, render, map errors to
exit codes. Nothing else lives here. Heavy modules are imported inside the commands so that
`nbbatch --help` stays fast."""

from __future__ import annotations

import functools
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from nbbatch.errors import ExitCode, NbbatchError, UsageError

app = typer.Typer(
    name="nbbatch",
    help="Generate thousands of images from a prompt manifest, paced, retried and resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: greppable logs


class Mode(StrEnum):  # Typer shows the choices
    online = "online"
    batch = "batch"


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Every request and retry.")]


def exits(command):
    """The one place errors become exit codes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            code = command(*args, **kwargs)
        except NbbatchError as exc:
            err_console.print(f"error: {exc.message}", markup=False, highlight=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitCode.SIGINT)) from None
        raise typer.Exit(int(code or 0))

    return wrapper


def _run_options(**kwargs):
    from nbbatch.settings import RunOptions, parse_duration

    duration = kwargs.pop("max_duration")
    return RunOptions(max_duration=parse_duration(duration) if duration else None, **kwargs)


def _start(settings, *, quiet: bool, verbose: bool) -> int:
    from nbbatch.cli.render import Reporter, print_summary, status_table
    from nbbatch.engine.plan import model_warnings
    from nbbatch.engine.run import run_batch
    from nbbatch.store import recent

    for warning in model_warnings(settings.manifest):
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    cwd = Path.cwd()
    recent.remember(cwd, settings.out, os.environ)
    live = sys.stdout.isatty()
    verbosity = 0 if quiet else 2 if verbose else 1
    with Reporter(console, live=live, verbosity=verbosity) as reporter:
        summary = run_batch(settings, env=os.environ, cwd=cwd, on_event=reporter)
    print_summary(console, summary, plain=not live)
    if summary.exit_code in (ExitCode.AUTH, ExitCode.USAGE):
        err_console.print(f"error: {summary.stop_reason}", markup=False, highlight=False)
    if live and not quiet:
        from nbbatch.store import open_for_reading

        with open_for_reading(settings.out) as ledger:
            console.print(status_table(list(ledger.rows())))
        console.print(f"images in {settings.out / 'images'}, ledger {settings.out / 'ledger.db'}")
    return summary.exit_code


@app.command()
@exits
def run(
    manifest: Annotated[Path, typer.Argument(help="The prompt manifest (YAML).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (overrides the manifest).")] = None,
    provider: Annotated[str | None, typer.Option(help="Send every prompt to this provider (gemini, vertex, openai, stability, openrouter, simulator).")] = None,
    interval: Annotated[str | None, typer.Option(help='Seconds between request starts: "7" or "5-10".')] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most, per provider.")] = None,
    max_images: Annotated[int | None, typer.Option(help="Stop after this many new images.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Stop before spending more than this (USD, estimated).")] = None,
    max_duration: Annotated[str | None, typer.Option(help="Stop dispatching after this long: 90s, 45m, 2h.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Put failed images back to pending first.")] = False,
    mode: Annotated[Optional[Mode], typer.Option(help="online: one request per image; batch: the providers' batch APIs, half the price, results within 24 h.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Batch mode: collect finished jobs and submit new ones, then exit (75 while jobs are live).")] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Generate every image the manifest asks for that is not done yet."""
    from nbbatch.settings import resolve

    options = _run_options(
        out=str(out) if out else None, provider=provider, interval=interval,
        concurrency=concurrency, max_images=max_images, max_cost=max_cost,
        max_duration=max_duration, retry_failed=retry_failed,
        mode=mode.value if mode else None, no_wait=no_wait,
    )
    settings = resolve(manifest, options, cwd=Path.cwd())
    return _start(settings, quiet=quiet, verbose=verbose)


def _find_out(out: Path | None) -> Path:
    from nbbatch.store import recent

    if out is not None:
        return out.absolute()
    found = recent.last_out(Path.cwd(), os.environ)
    if found is None:
        raise UsageError("no run was started from this directory; name the output folder: "
                         "nbbatch resume OUT")
    return found


@app.command()
@exits
def resume(
    out: Annotated[Path | None, typer.Argument(help="Output folder of the run (default: the last run started here).")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Continue a run with the manifest and settings it recorded."""
    from nbbatch.settings import resume_settings

    settings = resume_settings(_find_out(out))
    return _start(settings, quiet=quiet, verbose=verbose)


@app.command()
@exits
def status(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status document as JSON.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Show each image's prompt too.")] = False,
) -> int:
    """What is done, failed and pending, with counts."""
    from nbbatch.cli.render import batch_jobs_table, counts_line, status_table
    from nbbatch.engine.status import write_status_json
    from nbbatch.store import open_for_reading

    folder = _find_out(out)
    shown_out = _display_path(folder)
    with open_for_reading(folder) as ledger:
        last = ledger.last_run()
        manifest = _display_path(Path(last.manifest)) if last else None
        if as_json:
            write_status_json(ledger, sys.stdout, out=shown_out, manifest=manifest)
            return 0
        cost = ledger.cost_summary()
        console.print(status_table(list(ledger.rows()), wide=wide))
        jobs = ledger.batch.jobs()
        if jobs:
            console.print(batch_jobs_table(jobs))
        by_provider = ledger.counts_by_provider()
        console.print(counts_line(ledger.counts(), cost), markup=False)
        for name, counts in sorted(by_provider.items()):
            if name:
                console.print(f"  {name}: {counts.done} done, {counts.failed} failed", markup=False)
        console.print(f"out: {shown_out}  manifest: {manifest}", markup=False, highlight=False)
    return 0


@app.command()
@exits
def cancel(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
) -> int:
    """Cancel the live batch jobs of OUT; the next run collects what they finished."""
    from nbbatch.engine.cancel import cancel_jobs
    from nbbatch.settings import resume_settings

    settings = resume_settings(_find_out(out))
    for line in cancel_jobs(settings, env=os.environ):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0


def _display_path(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command()
@exits
def plan(
    manifest: Annotated[Path, typer.Argument(help="The prompt manifest (YAML).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (overrides the manifest).")] = None,
    provider: Annotated[str | None, typer.Option(help="Plan as if every prompt went to this provider.")] = None,
    interval: Annotated[str | None, typer.Option(help='Seconds between request starts: "7" or "5-10".')] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most, per provider.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Count failed images as pending.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Skip the pre-flight checks of keys and models.")] = False,
    mode: Annotated[Optional[Mode], typer.Option(help="Plan for online requests or batch jobs (the batch price).")] = None,
) -> int:
    """Validate the manifest and show what a run would do, with the run's pre-flight checks
    of keys and models. Sends no generation request."""
    from nbbatch.cli.render import checks_lines, plan_table
    from nbbatch.engine.plan import check_providers, plan_batch
    from nbbatch.settings import RunOptions, resolve

    options = RunOptions(out=str(out) if out else None, provider=provider, interval=interval,
                         concurrency=concurrency, retry_failed=retry_failed,
                         mode=mode.value if mode else None)
    settings = resolve(manifest, options, cwd=Path.cwd())
    result = plan_batch(settings)
    pacing = settings.manifest.pacing
    console.print(f"manifest {_display_path(settings.manifest.path)} is valid; "
                  f"output {_display_path(settings.out)}", markup=False, highlight=False)
    console.print(plan_table(result, interval=str(pacing.interval), concurrency=pacing.concurrency))
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False)
    if offline:
        return 0
    checks = check_providers(settings.manifest, os.environ)
    for line in checks_lines(checks):
        console.print(line, markup=False, highlight=False)
    if checks.stop is not None:
        raise checks.stop
    return 0


@app.command()
@exits
def gallery(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
) -> int:
    """Write OUT/gallery.html, a contact sheet of every image in the ledger, and print its path."""
    import webbrowser

    from nbbatch.cli.render import ThumbnailProgress
    from nbbatch.gallery import update_gallery

    folder = _find_out(out)
    with ThumbnailProgress(err_console, live=sys.stderr.isatty()) as progress:
        result = update_gallery(folder, on_progress=progress)
    for problem in result.thumbnail_errors:
        err_console.print(f"warning: no thumbnail for {problem}", markup=False, highlight=False)
    console.print(str(result.path), markup=False, highlight=False, soft_wrap=True)
    if open_page:
        webbrowser.open(result.path.resolve().as_uri())
    return 0


@app.command()
@exits
def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8765,
    latency: Annotated[str, typer.Option(help='Seconds per answer: "2" or "1-3".')] = "0",
    faults: Annotated[str, typer.Option(help="Fault rates, e.g. 503=0.3,429=0.1,500=0.05,timeout=0.01,blocked=0.02,no_image=0.05")] = "",
    retry_delay: Annotated[float, typer.Option(help="retryDelay the 429s ask for, seconds.")] = 1.0,
    daily_quota: Annotated[int | None, typer.Option(help="Images per 'day' before per-day 429s.")] = None,
    outage: Annotated[str | None, typer.Option(help='Seconds after start when every request gets 503: "30-90".')] = None,
    api_key: Annotated[str | None, typer.Option(help="Accept only this key (default: any non-empty key).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    outage_target: Annotated[str, typer.Option(help="Which API the outage hits: all, gemini, openai, stability, openrouter.")] = "all",
    fault_target: Annotated[str, typer.Option(help="Which API the random faults hit: all, gemini, openai, stability, openrouter.")] = "all",
    quota_target: Annotated[str, typer.Option(help="Which API the daily quota applies to: all, gemini, openai, stability, openrouter.")] = "all",
    metadata: Annotated[bool, typer.Option(help="Serve the model-metadata routes pre-flight uses (--no-metadata: act like a gateway without them).")] = True,
    batch_duration: Annotated[float, typer.Option(help="Seconds a batch job takes (its requests finish evenly over it).")] = 2.0,
    batch_outcome: Annotated[str, typer.Option(help="How batch jobs end: succeeded, failed, expired (half their requests run).")] = "succeeded",
    batch_create_503: Annotated[int, typer.Option(help="The next N batch create calls answer 503.")] = 0,
    batch_lose_create: Annotated[int, typer.Option(help="The next N batch create calls make the job but lose the answer.")] = 0,
    image_bytes: Annotated[int | None, typer.Option(help="Grow each image to about this many bytes (real response sizes).")] = None,
) -> int:
    """A local server speaking the Gemini, OpenAI, Stability and OpenRouter image APIs (Gemini and OpenAI online and batch), with latency and fault injection."""
    from nbbatch.model import parse_interval
    from nbbatch.sim import SimulatorOptions, parse_faults, serve

    try:
        lat = parse_interval(latency)
        window = parse_interval(outage) if outage else None
        rates = parse_faults(faults) if faults else {}
        settings: dict[str, Any] = dict(rates,
            latency=(lat.low, lat.high), retry_delay=retry_delay, daily_quota=daily_quota,
            outage=(window.low, window.high) if window else None, api_key=api_key, seed=seed,
            outage_target=outage_target, fault_target=fault_target, quota_target=quota_target,
            metadata=metadata, batch_duration=batch_duration, batch_outcome=batch_outcome,
            batch_create_503=batch_create_503, batch_lose_create=batch_lose_create,
            image_bytes=image_bytes,
        )
        options = SimulatorOptions(**settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    def ready(url: str) -> None:
        print(f"nbbatch simulator listening on {url}  (base_url: gemini {url}, openai {url}/v1,"
              f" stability {url}, openrouter {url}/api/v1; Ctrl-C stops)", flush=True)

    try:
        serve(options, host=host, port=port, on_ready=ready)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return 0


def main() -> None:
    app()
