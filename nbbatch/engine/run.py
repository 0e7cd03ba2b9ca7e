"""`run_batch`: the engine's entry point for a run, free of any terminal.

It takes the output folder's lock, opens the ledger, finishes saves a crash interrupted,
brings the ledger in line with the manifest, builds the providers the pending images need
(a missing key fails here, before any request) and drives the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import httpx

from nbbatch.engine.batch_run import BatchRun
from nbbatch.engine.budget import Budget
from nbbatch.engine.dispatcher import Dispatcher
from nbbatch.engine.events import Event, EventKind, EventSink, Level, Progress, Watcher
from nbbatch.engine.failover import candidates
from nbbatch.engine.planned import planned_digest, planned_images
from nbbatch.engine.shapes import Shapes
from nbbatch.engine.signals import handle_in_loop, ignored, raised_during_start_up
from nbbatch.engine.summary import RunSummary
from nbbatch.errors import ExitCode, LedgerWriteError, NbbatchError
from nbbatch.gallery import update_gallery
from nbbatch.model import Manifest
from nbbatch.providers import create_batch_client, create_provider
from nbbatch.providers.base import BatchClient, Provider
from nbbatch.settings import Settings, manifest_record
from nbbatch.store import LEDGER_FILE
from nbbatch.store.files import ImageStore, RecordedFiles
from nbbatch.store.ledger import Ledger
from nbbatch.store.lock import FolderLock
from nbbatch.store.paths import make_output_folder

TransportFactory = Callable[[str], httpx.AsyncBaseTransport | None]


def build_providers(
    manifest: Manifest, names: set[str], env: Mapping[str, str],
    transport_factory: TransportFactory | None = None,
) -> dict[str, Provider]:
    """Every provider the pending images need; a missing key fails here, before any request."""
    providers: dict[str, Provider] = {}
    for name in sorted(names):
        transport = transport_factory(name) if transport_factory else None
        providers[name] = create_provider(manifest.provider(name), env, transport=transport)
    return providers


def build_batch_clients(
    manifest: Manifest, names: set[str], env: Mapping[str, str],
    transport_factory: TransportFactory | None = None,
) -> dict[str, BatchClient]:
    """The batch client of every provider a batch run needs; a missing key fails here."""
    return {name: create_batch_client(manifest.provider(name), env,
                                      transport=transport_factory(name) if transport_factory
                                      else None) for name in sorted(names)}


def _recover(ledger: Ledger, store: ImageStore) -> None:
    for intent in ledger.saves_in_progress():
        key = (intent.id, intent.index)
        if store.recover(intent.file, intent.sha256):
            ledger.mark_done(key)
        else:
            ledger.clear_save(key)
    store.remove_temp_files()


def reopen_missing(ledger: Ledger, manifest: Manifest, out: Path) -> list[str]:
    """A done image whose file was deleted (or changed size) is made again: one stat each.
    Returns what to tell the user, one line per image."""
    problems = RecordedFiles(out).problems(ledger.done_files())
    ledger.reopen(problems)
    items = {item.id: item for item in manifest.items} if problems else {}
    return [f"{items[id_].label(idx) if id_ in items else id_}: {why}; it will be made again"
            for (id_, idx), why in problems]


def run_batch(
    settings: Settings,
    *,
    env: Mapping[str, str],
    cwd: Path,
    on_event: EventSink | None = None,
    transport_factory: TransportFactory | None = None,
    handle_signals: bool = True,
) -> RunSummary:
    with raised_during_start_up(handle_signals):
        return _run(settings, env=env, cwd=cwd, on_event=on_event,
                    transport_factory=transport_factory, handle_signals=handle_signals)


def _run(settings: Settings, *, env: Mapping[str, str], cwd: Path, on_event: EventSink | None,
         transport_factory: TransportFactory | None, handle_signals: bool) -> RunSummary:
    manifest, out, options = settings.manifest, settings.out, settings.options
    make_output_folder(out)
    with FolderLock(out):
        store = ImageStore(out)
        store.prepare()
        with Ledger.open(out / LEDGER_FILE) as ledger:
            _recover(ledger, store)
            ledger.sync(planned_images(manifest), manifest.items,
                        digest=planned_digest(manifest))
            notes = reopen_missing(ledger, manifest, out)
            if options.retry_failed:
                ledger.retry_failed()
            # Images waiting in a live batch job are that job's: never requested again here.
            pending = ledger.batch.submittable()
            items = {item.id: item for item in manifest.items}
            budget = Budget(options.max_images, options.max_cost, options.max_duration)
            if manifest.mode == "batch":
                fresh = {items[row.id].provider for row in pending if row.id in items}
                needed = fresh | {job.provider for job in ledger.batch.jobs(open_only=True)}
                clients = build_batch_clients(manifest, needed, env, transport_factory)
                checkers = build_providers(manifest, fresh, env, transport_factory)
                run_id = ledger.start_run(manifest=str(manifest.path),
                                          options=options.to_record(),
                                          settings=manifest_record(manifest), cwd=str(cwd),
                                          pid=os.getpid())
                batch_run = BatchRun(manifest, ledger, store, clients, out_name=out.name,
                                     budget=budget, no_wait=options.no_wait,
                                     checkers=checkers, on_event=on_event, notes=notes)
                summary = asyncio.run(_drive(batch_run, batch_run.run, handle_signals))
                with ignored(handle_signals), contextlib.suppress(LedgerWriteError):
                    ledger.finish_run(run_id, int(summary.exit_code))
                if summary.done_this_run:
                    summary = _refresh_gallery(out, summary, on_event)
                return summary
            shapes = Shapes(manifest)
            needed = {name for row in pending if row.id in items
                      for name in candidates(items[row.id], manifest.failover, shapes)}
            providers = build_providers(manifest, needed, env, transport_factory)
            run_id = ledger.start_run(manifest=str(manifest.path), options=options.to_record(),
                                      settings=manifest_record(manifest), cwd=str(cwd),
                                      pid=os.getpid())
            dispatcher = Dispatcher(manifest, ledger, store, providers, budget=budget,
                                    on_event=on_event)
            waiting = ledger.batch.in_open_jobs()
            if waiting:  # told after the start line, with the other notes
                notes.append(f"{waiting} images wait in live batch jobs and are left to "
                             "them: run with --mode batch to collect them")
            try:
                summary = asyncio.run(_drive(
                    dispatcher, lambda: dispatcher.run(pending, notes=notes), handle_signals))
            except NbbatchError as exc:  # the pre-flight refused a key or a model
                with ignored(handle_signals), contextlib.suppress(LedgerWriteError):
                    ledger.finish_run(run_id, int(exc.exit_code))
                raise
            # A ledger that filled up mid-run already stopped it and says so in the summary;
            # failing to close the run's record must not hide how the run went.
            with ignored(handle_signals), contextlib.suppress(LedgerWriteError):
                ledger.finish_run(run_id, int(summary.exit_code))
            if summary.done_this_run:
                summary = _refresh_gallery(out, summary, on_event)
    return summary


def _refresh_gallery(out: Path, summary: RunSummary, on_event: EventSink | None) -> RunSummary:
    """New images get their thumbnails and a place on the page. A page that cannot be
    written is a warning: the images and the ledger are what the run is for."""
    progress = Progress(summary.counts.total, summary.counts.done, summary.counts.failed,
                        summary.counts.pending, 0.0)

    watcher = Watcher(None if summary.watcher_error else on_event)

    def tell(message: str, level: Level) -> None:
        watcher(Event(EventKind.GALLERY, message, level=level), progress)

    try:
        result = update_gallery(out)
    except (NbbatchError, OSError) as exc:
        tell(f"gallery not updated: {getattr(exc, 'message', exc)}", Level.WARNING)
        return summary
    for problem in result.thumbnail_errors:
        tell(f"gallery: no thumbnail for {problem}", Level.WARNING)
    tell(f"gallery: {result.path} ({result.images} images, {result.thumbnails_made} new "
         "thumbnails)", Level.DEBUG)
    return replace(summary, gallery=result.path)


class _Interruptible(Protocol):
    interrupted_by: ExitCode | None

    def interrupt(self, code: ExitCode) -> None: ...


async def _drive(runner: _Interruptible, start: Callable[[], Awaitable[RunSummary]],
                 handle_signals: bool) -> RunSummary:
    if handle_signals:
        handle_in_loop(asyncio.get_running_loop(), lambda: runner.interrupted_by,
                       runner.interrupt)
    return await start()
