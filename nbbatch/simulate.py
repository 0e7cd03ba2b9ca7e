"""A local image-API server (Gemini and OpenAI) with latency and fault injection.

One core (`SimulatorCore.handle`: method, path, headers, body in; status, headers, body and a
delay out) serves two front ends: `SimulatorServer`, real HTTP on 127.0.0.1 for
`nbbatch simulate` and end-to-end tests, and `providers.simulator.SimulatorTransport`, an
in-process httpx transport. Each API's wire format lives in its own module: sim_gemini.py
(`POST /v1beta/models/{model}:generateContent`, shared/reference/gemini-api.md §3, §4, §9) and
sim_openai.py (`POST /v1/images/generations` and `/v1/images/edits`,
shared/reference/openai-and-other-apis.md §1, §2, §8); this module holds what they share.

Order of checks for one request: key, model, body (each API answers these its own way), then
the outage window (503), daily quota (per-day 429), the "[blocked]" prompt word, then the
random faults, drawn independently in FAULTS order with the first hit winning. The outage,
the quota and the random faults can be aimed at one API (`outage_target`, `quota_target`,
`fault_target`: "gemini", "openai" or "all") so failover can be tried. Front-door rejections
answer at once; what reaches "the model" (success, internal, blocked, no image) waits the
latency first.

Admin routes: GET /_sim/requests, GET /_sim/stats, POST /_sim/reset-quota, POST /_sim/configure,
GET /_sim/files/NAME (images handed out as URLs, for dall-e answers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import select
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

FAULTS = ("overloaded", "rate_limited", "internal", "timeout", "blocked", "no_image")
OUTCOMES = ("success", *FAULTS, "quota", "auth", "invalid", "not_found")
TARGETS = ("all", "gemini", "openai")  # which API an outage, the quota or the faults hit
_FAULT_KEYS = {"503": "overloaded", "429": "rate_limited", "500": "internal"}
BLOCKED_WORD, INVALID_WORD = "[blocked]", "[invalid]"
_MAX_FILES = 64  # images kept for GET /_sim/files (dall-e URL answers)


@dataclass
class SimulatorOptions:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, drawn uniformly per request
    overloaded: float = 0.0  # fault probabilities, 0..1
    rate_limited: float = 0.0
    retry_delay: float = 1.0  # server delay of per-minute 429s, seconds
    internal: float = 0.0
    timeout: float = 0.0
    hang: float = 600.0  # how long a timeout fault holds the request before its 504
    blocked: float = 0.0
    no_image: float = 0.0
    daily_quota: int | None = None  # successful images (per API) before per-day 429s
    outage: tuple[float, float] | None = None  # seconds since start: every request gets 503
    api_key: str | None = None  # None: any non-empty key is accepted
    seed: int | None = None
    scale: int = 4  # image pixels = real 1K size / scale
    outage_target: str = "all"  # "gemini" | "openai" | "all": which API the outage hits
    fault_target: str = "all"  # which API the random faults hit
    quota_target: str = "all"  # which API daily_quota limits

    def __post_init__(self) -> None:
        # Lists arrive from JSON (/_sim/configure); keep tuples so options stay comparable.
        self.latency = _pair("latency", self.latency)
        if self.outage is not None:
            self.outage = _pair("outage", self.outage)
        for name in FAULTS:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"{name}: fault rate must be a number from 0 to 1, got {rate!r}")
        for name in ("retry_delay", "hang"):
            if not isinstance(getattr(self, name), int | float) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")
        if self.daily_quota is not None and (
            not isinstance(self.daily_quota, int) or self.daily_quota < 0
        ):
            raise ValueError("daily_quota must be a whole number >= 0, or null")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string, or null for any key")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError("scale must be a whole number >= 1")
        for name in ("outage_target", "fault_target", "quota_target"):
            if getattr(self, name) not in TARGETS:
                raise ValueError(f"{name} must be one of {', '.join(TARGETS)}, "
                                 f"got {getattr(self, name)!r}")


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [from, to], got {value!r}") from None
    if not 0 <= low <= high:
        raise ValueError(f"{name} must satisfy 0 <= from <= to, got {value!r}")
    return low, high


def parse_faults(spec: str) -> dict[str, float]:
    """Parse "503=0.3,429=0.1,timeout=0.01" into {"overloaded": 0.3, "rate_limited": 0.1, ...}."""
    rates: dict[str, float] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        name = _FAULT_KEYS.get(key, key)
        if not sep or name not in FAULTS:
            raise ValueError(
                f"bad fault {item.strip()!r}: use KEY=RATE with KEY one of 503, 429, 500, "
                "timeout, blocked, no_image (or overloaded, rate_limited, internal)"
            )
        if name in rates:
            raise ValueError(f"fault {key!r} is given twice")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"fault {key!r}: rate {value!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault {key!r}: rate must be from 0 to 1, got {value}")
        rates[name] = rate
    return rates



@dataclass
class SimResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before sending


def json_response(status: int, doc: Any, delay: float = 0.0) -> SimResponse:
    body = json.dumps(doc).encode()
    return SimResponse(status, {"Content-Type": "application/json; charset=UTF-8"}, body, delay)


def _admin_error(code: int, message: str) -> SimResponse:
    return json_response(code, {"error": {"code": code, "message": message, "status": (
        "INVALID_ARGUMENT" if code == 400 else "NOT_FOUND" if code == 404 else "INTERNAL")}})


class Reject(Exception):
    """A request answered before it reaches the model (auth, routing, validation)."""

    def __init__(self, response: SimResponse, outcome: str) -> None:
        super().__init__(outcome)
        self.response, self.outcome = response, outcome


@dataclass(frozen=True)
class Decision:
    """What happens to an admitted request: an OUTCOMES name or "blocked_prompt" (the
    "[blocked]" word), the seconds to wait before answering, and 16 random bytes for ids."""

    outcome: str
    delay: float
    token: bytes


class Admitted(Protocol):
    """What an API module's parser returns for a request that passed the front door."""

    prompt: str

    @property
    def wants_image(self) -> bool: ...


P = TypeVar("P", bound=Admitted)


class SimulatorCore:
    def __init__(self, options: SimulatorOptions, clock: Callable[[], float] = time.monotonic):
        from nbbatch import sim_gemini, sim_openai  # they import this module's names

        self.options = options
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._rng = random.Random(options.seed)
        self._log: list[dict[str, Any]] = []
        self._quota_used: dict[str, int] = {}  # successful images per API
        self._files: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._apis = (sim_gemini, sim_openai)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SimResponse:
        url = urlsplit(path)
        route, method = unquote(url.path), method.upper()
        lower = {k.lower(): v for k, v in headers.items()}
        for api in self._apis:
            response = api.route(self, method, route, parse_qs(url.query), lower, body)
            if response is not None:
                return response
        admin = {
            ("GET", "/_sim/requests"): lambda: json_response(200, self.requests()),
            ("GET", "/_sim/stats"): lambda: json_response(200, self.stats()),
            ("POST", "/_sim/reset-quota"): lambda: json_response(200, self.reset_quota()),
            ("POST", "/_sim/configure"): lambda: self._configure_route(body),
        }
        action = admin.get((method, route))
        if action:
            return action()
        if method == "GET" and route.startswith("/_sim/files/"):
            return self._file(route.removeprefix("/_sim/files/"))
        return _admin_error(404, f"No route for {method} {route} on the simulator.")

    # --- the flow every API shares -----------------------------------------------------

    def generation(
        self,
        provider: str,
        model: str | None,
        admit: Callable[[SimulatorOptions, dict[str, Any]], P],
        render: Callable[[Decision, SimulatorOptions, P], tuple[SimResponse, str]],
    ) -> SimResponse:
        """Run one image request: `admit` checks it (raising Reject, and filling the log
        entry's model, prompt and references), the core decides, `render` answers."""
        t = self._clock() - self._start
        entry: dict[str, Any] = {"t": round(t, 3), "provider": provider, "model": model,
                                 "prompt": None, "references": 0}
        with self._lock:
            opts = self.options
        try:
            admitted = admit(opts, entry)
            decision = self._decide(opts, provider, admitted, t)
            response, outcome = render(decision, opts, admitted)
        except Reject as r:
            outcome, response = r.outcome, r.response
        entry.update(status=response.status, outcome=outcome)
        with self._lock:
            self._log.append(entry)
        return response

    def _decide(
        self, opts: SimulatorOptions, provider: str, admitted: Admitted, t: float
    ) -> Decision:
        """Pick the outcome under the lock: quota counting and seeded draws stay consistent."""
        with self._lock:
            # Always draw the same numbers so a seed gives the same sequence whatever happens.
            latency = opts.latency[0] + (opts.latency[1] - opts.latency[0]) * self._rng.random()
            hits = [name for name in FAULTS if self._rng.random() < getattr(opts, name)]
            token = self._rng.randbytes(16)
            used = self._quota_used.get(provider, 0)
            if (opts.outage and opts.outage[0] <= t < opts.outage[1]
                    and opts.outage_target in ("all", provider)):
                return Decision("overloaded", 0.0, token)
            if (opts.daily_quota is not None and used >= opts.daily_quota
                    and opts.quota_target in ("all", provider)):
                return Decision("quota", 0.0, token)
            if BLOCKED_WORD in admitted.prompt:
                return Decision("blocked_prompt", 0.0, token)
            aimed = opts.fault_target in ("all", provider)
            outcome = hits[0] if hits and aimed else "success"
            if outcome == "success" and admitted.wants_image:
                self._quota_used[provider] = used + 1
            if outcome == "timeout":
                return Decision(outcome, opts.hang, token)
            front_door = outcome in ("overloaded", "rate_limited")
            return Decision(outcome, 0.0 if front_door else latency, token)

    def store_file(self, name: str, mime_type: str, data: bytes) -> None:
        """Keep an image for GET /_sim/files/NAME (the most recent few only)."""
        with self._lock:
            self._files[name] = (mime_type, data)
            while len(self._files) > _MAX_FILES:
                self._files.popitem(last=False)

    def _file(self, name: str) -> SimResponse:
        with self._lock:
            found = self._files.get(name)
        if found is None:
            return _admin_error(404, f"No file {name!r} on the simulator (it keeps the last "
                                f"{_MAX_FILES}).")
        return SimResponse(200, {"Content-Type": found[0]}, found[1])

    # --- admin -------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict.fromkeys(OUTCOMES, 0)
            by_provider: dict[str, int] = {}
            for entry in self._log:
                counts[entry["outcome"]] += 1
                by_provider[entry["provider"]] = by_provider.get(entry["provider"], 0) + 1
            return {"requests": len(self._log), "quota_used": sum(self._quota_used.values()),
                    "quota_used_by_provider": dict(self._quota_used), "outcomes": counts,
                    "requests_by_provider": by_provider}

    def reset_quota(self) -> dict[str, Any]:
        with self._lock:
            self._quota_used.clear()
        return {"quota_used": 0}

    def configure(self, **changes: Any) -> SimulatorOptions:
        """Change options at run time; unknown names and bad values raise ValueError."""
        known = {f.name for f in dataclasses.fields(SimulatorOptions)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {sorted(known)}")
        with self._lock:
            self.options = dataclasses.replace(self.options, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.options.seed)
            return self.options

    def _configure_route(self, body: bytes) -> SimResponse:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of option names and values")
            options = self.configure(**changes)
        except (ValueError, TypeError) as e:
            return _admin_error(400, str(e))
        return json_response(200, dataclasses.asdict(options))


# --- HTTP over sockets ----------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the process alive
    request_queue_size = 128  # the default 5 resets connections when a client opens dozens

    def __init__(self, address: tuple[str, int], core: SimulatorCore, log_requests: bool):
        super().__init__(address, _Handler)
        self.core, self.log_requests = core, log_requests
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections."""
        with self._connections_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so httpx pools connections as with the real API
    server_version, sys_version = "nbbatch-simulator", ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stall
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _respond(self) -> None:
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = self.server.core.handle(self.command, self.path, dict(self.headers), body)
        except Exception as e:  # a simulator bug must still answer, not drop the connection
            response = _admin_error(500, f"simulator error: {e!r}")
        if response.delay > 0 and not self._wait(response.delay):
            self.close_connection = True  # stopping, or the client gave up: send nothing
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _respond

    def _wait(self, seconds: float) -> bool:
        """Sleep in small steps; False as soon as the server stops or the client disconnects."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.wait(min(left, 0.05)) or self._client_gone():
                return False
        return True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


class SimulatorServer:
    """The simulator on a real socket. Binds at construction, so `.url` is known at once."""

    def __init__(
        self,
        options: SimulatorOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_requests: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = SimulatorCore(options, clock)
        self._httpd = _HTTPServer((host, port), self.core, log_requests)
        self._thread: threading.Thread | None = None
        bound_host, bound_port = self._httpd.server_address[:2]
        self.url = f"http://{bound_host}:{bound_port}"

    def start(self) -> SimulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                # stop() waits up to one poll for the accept loop to notice.
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                name="nbbatch-simulator", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    options: SimulatorOptions,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    on_ready: Callable[[str], None] | None = None,
    log_requests: bool = False,
) -> None:
    """Run the simulator until Ctrl-C or SIGTERM, then stop it and return."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with SimulatorServer(options, host, port, log_requests=log_requests) as server:
            if on_ready:
                on_ready(server.url)
            while not stop.wait(0.2):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
