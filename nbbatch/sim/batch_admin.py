"""GET /_sim/batches: every batch job the simulator holds, for tests and the chaos run to
check against the ledger (which prompts went in which job, and when each job was live)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbbatch.sim.batch_jobs import BatchStore
from nbbatch.sim.core import SimResponse, SimulatorCore, json_response


def route(core: SimulatorCore, method: str, path: str, query: Mapping[str, list[str]],
          headers: Mapping[str, str], body: bytes) -> SimResponse | None:
    if (method, path) != ("GET", "/_sim/batches"):
        return None
    with core.state_lock:
        stores = [s for s in core.state.values() if isinstance(s, BatchStore)]
    now = core.now
    jobs: list[dict[str, Any]] = []
    for store in stores:
        for job in reversed(store.listing()):
            end = job.cancelled if job.cancelled is not None else job.created + job.duration
            jobs.append({
                "name": job.name, "provider": job.provider,
                "display_name": job.display_name or job.metadata.get("nbbatch_job"),
                "created": round(job.created, 3), "ends": round(end, 3),
                "phase": job.phase(now), "finished_requests": job.finished_by(now),
                "requests": [{"key": r.key, "prompt": r.prompt,
                              "outcome": r.decision.outcome if r.decision else "invalid"}
                             for r in job.requests],
            })
    jobs.sort(key=lambda j: j["created"])
    return json_response(200, jobs)
