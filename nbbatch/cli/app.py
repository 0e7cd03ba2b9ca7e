"""The command line: parse options, build settings, call the engine, show what came of it.
Errors become exit codes in `exits`; the display lives in `session` and `status_view`.
Heavy modules are imported inside the commands so that `nbbatch --help` stays fast."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nbbatch import __version__
from nbbatch.cli.console import check_width_variables, guard_standard_streams, output_failure
from nbbatch.cli.exits import exits, say_error
from nbbatch.errors import ExitCode, UsageError

app = typer.Typer(
    name="nbbatch",
    help="Generate thousands of images from a prompt manifest, paced, retried and resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



class Mode(StrEnum):  # Typer shows the choices
    online = "online"
    batch = "batch"


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Every request and retry.")]
# Written out, not read from the registry: importing it pulls in httpx, and `nbbatch --help`
# must stay fast. tests/test_cli.py checks the list against the registry.
PROVIDERS_HELP = "gemini, vertex, openai, stability, openrouter, simulator"


def _show_version(value: bool) -> None:
    if value:
        print(f"nbbatch {__version__}")
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        if (failure := output_failure()) is not None:
            say_error(f"cannot write the output: {failure.strerror or failure}")
            raise typer.Exit(ExitCode.OUTPUT)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Generate thousands of images from a prompt manifest, paced, retried and resumable."""


def _run_options(**kwargs):
    from nbbatch.settings import RunOptions, parse_duration

    duration = kwargs.pop("max_duration")
    seconds = parse_duration(duration) if duration is not None else None  # "" is an error too
    return RunOptions(max_duration=seconds, **kwargs)


@app.command()
@exits()
def run(
    manifest: Annotated[Path, typer.Argument(help="The prompt manifest (YAML).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (overrides the manifest).")] = None,
    provider: Annotated[str | None, typer.Option(help=f"Send every prompt to this provider ({PROVIDERS_HELP}); turns failover off.")] = None,
    interval: Annotated[str | None, typer.Option(help='Seconds between request starts: "7" or "5-10".')] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most, per provider.")] = None,
    max_images: Annotated[int | None, typer.Option(help="Stop after this many new images.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Never spend more than this in this run (USD, at the dearest price each image may have).")] = None,
    max_duration: Annotated[str | None, typer.Option(help="Stop dispatching after this long: 90s, 45m, 2h.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Put failed images back to pending first.")] = False,
    mode: Annotated[Optional[Mode], typer.Option(help="online: one request per image; batch: the providers' batch APIs, half the price, results within 24 h.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Batch mode: collect finished jobs and submit new ones, then exit (75 while jobs are live).")] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Generate every image the manifest asks for that is not done yet."""
    from nbbatch.cli.session import start
    from nbbatch.settings import resolve

    options = _run_options(
        out=str(out) if out else None, provider=provider, interval=interval,
        concurrency=concurrency, max_images=max_images, max_cost=max_cost,
        max_duration=max_duration, retry_failed=retry_failed,
        mode=mode.value if mode else None, no_wait=no_wait,
    )
    settings = resolve(manifest, options, cwd=Path.cwd())
    return start(settings, command="run", quiet=quiet, verbose=verbose)


def _find_out(out: Path | None, command: str) -> Path:
    from nbbatch.store import recent

    if out is not None:
        return out.absolute()
    found = recent.last_out(Path.cwd(), os.environ)
    if found is None:
        raise UsageError("no run was started from this directory; name the output folder: "
                         f"nbbatch {command} OUT")
    return found


@app.command()
@exits()
def resume(
    out: Annotated[Path | None, typer.Argument(help="Output folder of the run (default: the last run started here).")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> int:
    """Continue a run with the manifest and settings it recorded."""
    from nbbatch.cli.session import start
    from nbbatch.settings import resume_settings

    settings = resume_settings(_find_out(out, "resume"))
    return start(settings, command="resume", quiet=quiet, verbose=verbose)


@app.command()
@exits(output_is_result=True)
def status(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status document as JSON.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="List only the failed images.")] = False,
    pending: Annotated[bool, typer.Option("--pending", help="List only the pending images.")] = False,
    summary: Annotated[bool, typer.Option("--summary", help="Counts and cost only, no list of images.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Show each image's prompt too.")] = False,
) -> int:
    """What is done, failed and pending, with counts and cost. Piped, one line per image."""
    from nbbatch.cli.status_view import show_status
    from nbbatch.engine.status import View

    if failed and pending:
        raise UsageError("choose one of --failed and --pending (or neither, for every image)")
    view = View.FAILED if failed else View.PENDING if pending else View.ALL
    show_status(_find_out(out, "status"), view=view, summary_only=summary, as_json=as_json,
                wide=wide)
    return 0


@app.command()
@exits()
def cancel(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
) -> int:
    """Cancel the live batch jobs of OUT; the next run collects what they finished."""
    from rich.text import Text

    from nbbatch.cli.console import make_console
    from nbbatch.engine.cancel import cancel_jobs
    from nbbatch.settings import resume_settings
    from nbbatch.text import printable

    settings = resume_settings(_find_out(out, "cancel"))
    console = make_console()
    for line in cancel_jobs(settings, env=os.environ):
        console.print(Text(printable(line)), soft_wrap=True)
    return 0


@app.command()
@exits(output_is_result=True)
def plan(
    manifest: Annotated[Path, typer.Argument(help="The prompt manifest (YAML).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (overrides the manifest).")] = None,
    provider: Annotated[str | None, typer.Option(help=f"Plan as if every prompt went to this provider ({PROVIDERS_HELP}).")] = None,
    interval: Annotated[str | None, typer.Option(help='Seconds between request starts: "7" or "5-10".')] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most, per provider.")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Count failed images as pending.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Skip the pre-flight checks of keys and models.")] = False,
    mode: Annotated[Optional[Mode], typer.Option(help="Plan for online requests or batch jobs (the batch price).")] = None,
) -> int:
    """Validate the manifest and show what a run would do, with the run's pre-flight checks
    of keys and models. Sends no generation request."""
    from rich.text import Text

    from nbbatch.cli.console import display_path, make_console
    from nbbatch.cli.exits import say_error
    from nbbatch.cli.tables import checks_lines, plan_table
    from nbbatch.engine.plan import check_providers, plan_batch
    from nbbatch.settings import RunOptions, resolve
    from nbbatch.text import printable

    options = RunOptions(out=str(out) if out else None, provider=provider, interval=interval,
                         concurrency=concurrency, retry_failed=retry_failed,
                         mode=mode.value if mode else None)
    settings = resolve(manifest, options, cwd=Path.cwd())
    result = plan_batch(settings)
    pacing = settings.manifest.pacing
    console = make_console()
    console.print(Text(printable(f"manifest {display_path(settings.manifest.path)} is valid; "
                                 f"output {display_path(settings.out)}")))
    console.print(plan_table(result, interval=str(pacing.interval), concurrency=pacing.concurrency))
    for warning in result.warnings:
        say_error(warning, "warning")
    if offline:
        return 0
    checks = check_providers(settings.manifest, os.environ)
    for line in checks_lines(checks):
        console.print(Text(printable(line)))
    if checks.stop is not None:
        raise checks.stop
    return 0


@app.command()
@exits(output_is_result=True)
def gallery(
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: the last run started here).")] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
) -> int:
    """Write OUT/gallery.html, a contact sheet of every image in the ledger, and print its path."""
    import sys
    import webbrowser

    from rich.text import Text

    from nbbatch.cli.console import make_console
    from nbbatch.cli.exits import say_error
    from nbbatch.cli.thumbnails import ThumbnailProgress
    from nbbatch.gallery import update_gallery
    from nbbatch.text import printable

    folder = _find_out(out, "gallery")
    with ThumbnailProgress(make_console(stderr=True), live=sys.stderr.isatty()) as progress:
        result = update_gallery(folder, on_progress=progress)
    for problem in result.thumbnail_errors:
        say_error(f"no thumbnail for {problem}", "warning")
    make_console().print(Text(printable(str(result.path))), soft_wrap=True)
    # webbrowser answers False (or raises) where no browser can be found, as on a server:
    # say so, or --open would look like it worked.
    if open_page:
        try:
            opened = webbrowser.open(result.path.resolve().as_uri())
        except webbrowser.Error:
            opened = False
        if not opened:
            say_error(f"no browser could be opened; open {result.path} in one", "warning")
    return 0


@app.command()
@exits()
def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 8765,
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
    """The `nbbatch` program: widths from the environment checked, and standard streams
    whose failure (a closed pipe, a full disk) ends output, never the run."""
    # A 100,000-prompt manifest is about a million small objects, made at once, that live as
    # long as the command and hold no cycles: at the default thresholds the collector walks
    # them all again each time their number grows by a quarter. Collect young objects less
    # often; cycles (an exception's traceback, a finished task) are still found.
    gc.set_threshold(50_000, 20, 100)
    check_width_variables(os.environ)
    guard_standard_streams()
    app()
