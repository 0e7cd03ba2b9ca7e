"""`nbbatch cancel OUT`: ask the providers to cancel every live batch job of OUT.

It takes no lock (a run may be waiting on those very jobs) and writes nothing but the jobs'
states: what a job finished before the cancel is collected by the next run (or by the run
that is waiting), and its other images go back to pending then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from nbbatch.engine.batch_context import describe
from nbbatch.engine.retry import retried
from nbbatch.engine.run import TransportFactory, build_batch_clients
from nbbatch.errors import ProviderError
from nbbatch.providers.base import BatchClient
from nbbatch.settings import Settings
from nbbatch.store import LEDGER_FILE, open_for_reading
from nbbatch.store.batch_jobs import JobRecord
from nbbatch.store.ledger import Ledger


def cancel_jobs(settings: Settings, *, env: Mapping[str, str],
                transport_factory: TransportFactory | None = None) -> list[str]:
    """Cancel the open jobs; one line per job says what became of it."""
    open_for_reading(settings.out).close()  # a clear error when there is no run there
    with Ledger.open(settings.out / LEDGER_FILE) as ledger:
        jobs = ledger.batch.jobs(open_only=True)
        if not jobs:
            return [f"no live batch jobs in {settings.out}"]
        clients = build_batch_clients(settings.manifest, {job.provider for job in jobs}, env,
                                      transport_factory)
        lines = asyncio.run(_cancel_all(settings, ledger, jobs, clients))
    return [*lines, "the next run collects what they finished; their other images go back "
                    "to pending"]


async def _cancel_all(settings: Settings, ledger: Ledger, jobs: list[JobRecord],
                      clients: Mapping[str, BatchClient]) -> list[str]:
    lines = []
    try:
        for job in jobs:
            lines.append(await _cancel(settings, ledger, job, clients[job.provider]))
    finally:
        for client in clients.values():
            await client.aclose()
    return lines


async def _cancel(settings: Settings, ledger: Ledger, job: JobRecord,
                  client: BatchClient) -> str:
    retry = settings.manifest.retry
    try:
        name = job.name
        if name is None:  # recorded, never confirmed: it may still exist under our name
            found = await retried(lambda _: client.find(job.display_name), retry)
            if found is None:
                return f"{describe(job)}: was never created; nothing to cancel"
            name = found.name
            ledger.batch.mark_live(job.job_id, name=name, state=found.state)
        await retried(lambda _: client.cancel(name), retry)
        status = await retried(lambda _: client.get(name), retry)
    except ProviderError as exc:
        return f"{describe(job)}: could not be cancelled: {exc.message}"
    ledger.batch.update_state(job.job_id, state=status.state, succeeded=status.succeeded,
                              failed=status.failed)
    return f"{describe(job)}: cancel requested; it is now {status.state}"
