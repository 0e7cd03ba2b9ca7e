"""The `simulator` provider: the Gemini provider talking to the simulator in-process.

An httpx transport hands each request to the same SimulatorCore that answers behind
`nbbatch simulate`, with no sockets; its delays become real `asyncio.sleep`s, so latency,
hangs and the client's timeouts behave as over the network. The registry names this module
for the provider `simulator`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Annotated, Any

import httpx
from annotated_types import Ge

from nbbatch.errors import OptionError, UsageError
from nbbatch.manifest.sections import SectionError, check_value
from nbbatch.model import ProviderConfig, parse_interval
from nbbatch.providers.gemini import GeminiProvider
from nbbatch.providers.gemini_batch import GeminiBatchClient
from nbbatch.sim.apis import simulator_core
from nbbatch.sim.core import SimulatorCore
from nbbatch.sim.options import SimulatorOptions, parse_faults
from nbbatch.text import kind_of, shown

_KEY = "simulator-key"  # the in-process core accepts any key


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
        if answer.drop:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request)
        if answer.stream is not None:
            return httpx.Response(answer.status, headers=answer.headers,
                                  stream=_Chunks(answer.stream), request=request)
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )


class _Chunks(httpx.AsyncByteStream):
    """A streamed body (a results file), handed over a chunk at a time as it is made."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
            await asyncio.sleep(0)


async def _trace(request: httpx.Request, event: str) -> None:
    hook = request.extensions.get("trace")
    if hook is not None:
        result = hook(event, {"request": request})
        if inspect.isawaitable(result):
            await result


def simulator_transport(options: SimulatorOptions) -> SimulatorTransport:
    return SimulatorTransport(simulator_core(options))


def create(config: ProviderConfig, api_key: str | None,
           transport: httpx.AsyncBaseTransport | None) -> GeminiProvider:
    sim_config = ProviderConfig(name="simulator", base_url="http://simulator.invalid",
                                timeout=config.timeout, options=config.options)
    transport = transport or simulator_transport(simulator_options(config.options))
    return GeminiProvider(sim_config, _KEY, transport=transport)


def create_batch(config: ProviderConfig, api_key: str | None,
                 transport: httpx.AsyncBaseTransport | None) -> GeminiBatchClient:
    """Batch mode on the simulator: the Gemini batch client against the in-process core,
    whose jobs finish after `batch_duration` seconds (default 2). The core lives as long
    as the process: a job left live by --no-wait is unknown to the next run (use
    `nbbatch simulate` to rehearse that)."""
    sim_config = ProviderConfig(name="simulator", base_url="http://simulator.invalid",
                                timeout=config.timeout, options=config.options)
    transport = transport or simulator_transport(simulator_options(config.options))
    return GeminiBatchClient(sim_config, _KEY, transport=transport, name="simulator")


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's `providers.simulator` options, checked: latency as (low, high), faults
    as the spec string `nbbatch simulate --faults` takes (a mapping of rates is accepted)."""
    out = dict(options)
    try:
        if "latency" in out:
            latency = parse_interval(out["latency"])
            out["latency"] = (latency.low, latency.high)
        for key in ("daily_quota", "seed"):
            if key in out:
                check_value(Annotated[int, Ge(0)] if key == "daily_quota" else int, out[key],
                            (key,))
        if "batch_duration" in out:
            out["batch_duration"] = float(check_value(Annotated[float, Ge(0)],
                                                      out["batch_duration"],
                                                      ("batch_duration",)))
    except ValueError as exc:
        raise OptionError("latency", str(exc)) from None
    except SectionError as exc:
        raise OptionError(str(exc.path[0]), exc.message) from None
    if "faults" in out:
        out["faults"] = _fault_spec(out["faults"])
    return out


def _fault_spec(value: Any) -> str:
    if isinstance(value, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if not isinstance(value, str):
        raise OptionError("faults", f'must be fault rates such as "503=0.3,429=0.1", got '
                                    f"{kind_of(value)} {shown(value)}")
    try:
        parse_faults(value)
    except ValueError as e:
        raise OptionError("faults", str(e)) from None
    return value


def simulator_options(options: Mapping[str, Any]) -> SimulatorOptions:
    """SimulatorOptions from a manifest's checked `providers.simulator` options."""
    values = dict(options)
    known = {f.name for f in dataclasses.fields(SimulatorOptions)}
    unknown = sorted(set(values) - known - {"faults"})
    if unknown:
        raise UsageError(f"Unknown simulator option(s): {', '.join(unknown)}. "
                         f"Known: faults, {', '.join(sorted(known))}.")
    try:
        if "faults" in values:
            values = {**parse_faults(str(values.pop("faults"))), **values}
        if "latency" in values:
            latency = parse_interval(values["latency"])
            values["latency"] = (latency.low, latency.high)
        return SimulatorOptions(**values)
    except (TypeError, ValueError) as e:
        raise UsageError(f"Bad simulator options: {e}") from None
