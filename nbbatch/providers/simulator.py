"""The simulator as an in-process httpx transport: the Gemini wire format with no sockets.

The same SimulatorCore answers as behind `nbbatch simulate`; its delays become real
`asyncio.sleep`s, so latency, hangs and the client's timeouts behave as over the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import httpx

from nbbatch.errors import UsageError
from nbbatch.simulate import SimulatorCore, SimulatorOptions, parse_faults


class SimulatorTransport(httpx.AsyncBaseTransport):
    def __init__(self, core: SimulatorCore) -> None:
        self.core = core

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        # Report the request as sent, like httpcore's trace hook: callers use it to tell a
        # timeout that may have been billed from a request that never left.
        for event in ("send_request_headers", "send_request_body"):
            await _trace(request, f"http11.{event}.started")
            await _trace(request, f"http11.{event}.complete")
        path = request.url.raw_path.decode("ascii")  # path and query, as a server sees them
        answer = self.core.handle(request.method, path, dict(request.headers), body)
        # httpx leaves timeouts to the transport; honour the read timeout as httpcore would.
        read_timeout = request.extensions.get("timeout", {}).get("read")
        if read_timeout is not None and answer.delay > read_timeout:
            await asyncio.sleep(read_timeout)
            raise httpx.ReadTimeout("simulated read timeout", request=request)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )


async def _trace(request: httpx.Request, event: str) -> None:
    hook = request.extensions.get("trace")
    if hook is not None:
        result = hook(event, {"request": request})
        if inspect.isawaitable(result):
            await result


def simulator_transport(options: SimulatorOptions) -> SimulatorTransport:
    return SimulatorTransport(SimulatorCore(options))


def simulator_options(options: Mapping[str, Any]) -> SimulatorOptions:
    """SimulatorOptions from a manifest's `providers.simulator` extras.

    Keys are SimulatorOptions field names, plus `faults` ("503=0.3,429=0.1", as for
    `nbbatch simulate`); `latency` may be one number, "2-5" or [2, 5].
    """
    values = dict(options)
    known = {f.name for f in dataclasses.fields(SimulatorOptions)}
    unknown = sorted(set(values) - known - {"faults"})
    if unknown:
        raise UsageError(
            f"Unknown simulator option(s): {', '.join(unknown)}. "
            f"Known: faults, {', '.join(sorted(known))}."
        )
    try:
        if "faults" in values:
            faults = parse_faults(str(values.pop("faults")))
            values = {**faults, **values}
        latency = values.get("latency")
        if isinstance(latency, int | float):
            values["latency"] = (latency, latency)
        elif isinstance(latency, str):
            low, _, high = latency.partition("-")
            values["latency"] = (float(low), float(high or low))
        return SimulatorOptions(**values)
    except (TypeError, ValueError) as e:
        raise UsageError(f"Bad simulator options: {e}") from None
