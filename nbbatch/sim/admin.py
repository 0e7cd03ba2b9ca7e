"""The simulator's own routes, for tests and people watching a run:

GET /_sim/requests (every generation request), GET /_sim/metadata (the pre-flight's metadata
requests), GET /_sim/stats, POST /_sim/reset-quota, POST /_sim/configure (change options at
run time), GET /_sim/files/NAME (images handed out as URLs, for dall-e answers).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from nbbatch.sim.core import SimResponse, SimulatorCore, admin_error, json_response


def route(core: SimulatorCore, method: str, path: str, query: Mapping[str, list[str]],
          headers: Mapping[str, str], body: bytes) -> SimResponse | None:
    if not path.startswith("/_sim/"):
        return None
    if method == "GET" and path.startswith("/_sim/files/"):
        name = path.removeprefix("/_sim/files/")
        found = core.file(name)
        if found is None:
            return admin_error(404, f"No file {name!r} on the simulator (it keeps only the "
                                    "most recent ones).")
        return SimResponse(200, {"Content-Type": found[0]}, found[1])
    answers = {
        ("GET", "/_sim/requests"): lambda: json_response(200, core.requests()),
        ("GET", "/_sim/metadata"): lambda: json_response(200, core.metadata_requests()),
        ("GET", "/_sim/stats"): lambda: json_response(200, core.stats()),
        ("POST", "/_sim/reset-quota"): lambda: json_response(200, core.reset_quota()),
        ("POST", "/_sim/configure"): lambda: _configure(core, body),
    }
    answer = answers.get((method, path))
    return answer() if answer else None


def _configure(core: SimulatorCore, body: bytes) -> SimResponse:
    try:
        changes = json.loads(body or b"{}")
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object of option names and values")
        options = core.configure(**changes)
    except (ValueError, TypeError) as e:
        return admin_error(400, str(e))
    return json_response(200, dataclasses.asdict(options))
