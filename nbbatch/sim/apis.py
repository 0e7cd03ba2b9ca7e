"""The APIs the simulator speaks, each registered with its core as a route function.

A new API is one module with a `route(core, method, path, query, headers, body)` function,
added to ROUTES; the core knows none of them by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nbbatch.sim import (
    admin,
    batch_admin,
    gemini,
    gemini_batch,
    openai,
    openai_batch,
    openrouter,
    stability,
)
from nbbatch.sim.core import Route, SimulatorCore
from nbbatch.sim.options import SimulatorOptions

ROUTES: tuple[Route, ...] = (gemini_batch.route, gemini.route, openai.route, openai_batch.route,
                             stability.route, openrouter.route, batch_admin.route, admin.route)


def simulator_core(options: SimulatorOptions,
                   clock: Callable[[], float] = time.monotonic) -> SimulatorCore:
    """A core speaking every API in ROUTES."""
    return SimulatorCore(options, ROUTES, clock)
