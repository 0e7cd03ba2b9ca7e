"""The simulator's core: one request in (method, path, headers, body), one answer out.

`SimulatorCore.handle` serves two front ends: `SimulatorServer` (server.py), real HTTP on
127.0.0.1 for `nbbatch simulate` and end-to-end tests, and the in-process transport behind
the `simulator` provider (inprocess.py). Each API's wire format lives in its own module and
is registered with the core as a route function (see `nbbatch.sim.simulator_core`).

Order of checks for one request: key, model, body (each API answers these its own way), then
the outage window (503), daily quota (per-day 429), the "[blocked]" prompt word, then the
random faults, drawn independently in FAULTS order with the first hit winning. The outage,
the quota and the random faults can be aimed at one API (`outage_target`, `quota_target`,
`fault_target`) so failover can be tried. Front-door rejections answer at once; what reaches
"the model" (success, internal, blocked, no image) waits the latency first.

Its admin routes (requests log, stats, quota reset, configure, files) are in admin.py.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from nbbatch.sim.options import FAULTS, OUTCOMES, SimulatorOptions

BLOCKED_WORD, INVALID_WORD = "[blocked]", "[invalid]"
_MAX_FILES = 64  # images kept for GET /_sim/files (dall-e URL answers)


@dataclass
class SimResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before sending
    stream: Iterable[bytes] | None = None  # a body made while it is sent (chunked), not `body`
    drop: bool = False  # close the connection instead of answering (a lost answer)


def json_response(status: int, doc: Any, delay: float = 0.0) -> SimResponse:
    body = json.dumps(doc).encode()
    return SimResponse(status, {"Content-Type": "application/json; charset=UTF-8"}, body, delay)


def admin_error(code: int, message: str) -> SimResponse:
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
    variant: int = 0  # how many images this prompt was given before: repeats differ


class Admitted(Protocol):
    """What an API module's parser returns for a request that passed the front door."""

    prompt: str

    @property
    def wants_image(self) -> bool: ...


P = TypeVar("P", bound=Admitted)


class Route(Protocol):
    """One API's entry point: its answer to a request, or None when the path is not its own.
    `headers` have lower-case names."""

    def __call__(self, core: SimulatorCore, method: str, path: str,
                 query: Mapping[str, list[str]], headers: Mapping[str, str],
                 body: bytes) -> SimResponse | None: ...


class SimulatorCore:
    def __init__(self, options: SimulatorOptions, routes: Sequence[Route],
                 clock: Callable[[], float] = time.monotonic):
        self.options = options
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._rng = random.Random(options.seed)
        self._log: list[dict[str, Any]] = []  # generation requests
        self._metadata_log: list[dict[str, Any]] = []
        self._quota_used: dict[str, int] = {}  # successful images per API
        self._variants: dict[tuple[str, str], int] = {}  # (API, prompt) -> images given
        self._files: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._routes = tuple(routes)
        self.state: dict[str, Any] = {}  # what an API keeps between requests (batch jobs)
        self.state_lock = threading.Lock()

    @property
    def now(self) -> float:
        """Seconds since the simulator started."""
        return self._clock() - self._start

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SimResponse:
        url = urlsplit(path)
        route, method = unquote(url.path), method.upper()
        lower = {k.lower(): v for k, v in headers.items()}
        for api_route in self._routes:
            response = api_route(self, method, route, parse_qs(url.query), lower, body)
            if response is not None:
                return response
        return admin_error(404, f"No route for {method} {route} on the simulator.")

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

    def metadata(self, provider: str, model: str,
                 answer: Callable[[SimulatorOptions], SimResponse]) -> SimResponse:
        """A free metadata request (a model's description): logged apart from generation
        requests, and answered by `answer` (raising Reject for a bad key). Outages, quotas
        and faults do not apply: such routes stay up when the model is overloaded."""
        with self._lock:
            opts = self.options
        try:
            if not opts.metadata:
                raise Reject(SimResponse(404, {"Content-Type": "text/html"},
                                         b"<html><body>404 Not Found</body></html>"), "not_found")
            response = answer(opts)
        except Reject as r:
            response = r.response
        with self._lock:
            self._metadata_log.append({"t": round(self._clock() - self._start, 3),
                                       "provider": provider, "model": model,
                                       "status": response.status})
        return response
    def batch_request(self, provider: str, model: str, admitted: Admitted, job: str,
                      references: int = 0) -> Decision:
        """Decide one request of a batch job, as an online one would be but with neither
        outage nor daily quota (batch APIs have their own limits), and log it."""
        with self._lock:
            opts = self.options
        decision = self._decide(opts, provider, admitted, self.now, batch=True)
        outcome = "blocked" if decision.outcome == "blocked_prompt" else decision.outcome
        self.log({"t": round(self.now, 3), "provider": provider, "model": model,
                  "prompt": admitted.prompt, "references": references, "batch": job,
                  "status": 200, "outcome": outcome})
        return decision

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def take_count(self, option: str) -> bool:
        """Use up one of a counted option (batch_create_503...): True if one was left."""
        with self._lock:
            left = getattr(self.options, option)
            if left <= 0:
                return False
            self.options = dataclasses.replace(self.options, **{option: left - 1})
            return True

    def _decide(
        self, opts: SimulatorOptions, provider: str, admitted: Admitted, t: float,
        batch: bool = False,
    ) -> Decision:
        """Pick the outcome under the lock: quota counting and seeded draws stay consistent."""
        with self._lock:
            # Always draw the same numbers so a seed gives the same sequence whatever happens.
            latency = opts.latency[0] + (opts.latency[1] - opts.latency[0]) * self._rng.random()
            hits = [name for name in FAULTS if self._rng.random() < getattr(opts, name)]
            token = self._rng.randbytes(16)
            used = self._quota_used.get(provider, 0)
            online = not batch  # batch jobs meet neither the outage nor the daily quota
            if (online and opts.outage and opts.outage[0] <= t < opts.outage[1]
                    and opts.outage_target in ("all", provider)):
                return Decision("overloaded", 0.0, token)
            if (online and opts.daily_quota is not None and used >= opts.daily_quota
                    and opts.quota_target in ("all", provider)):
                return Decision("quota", 0.0, token)
            if BLOCKED_WORD in admitted.prompt:
                return Decision("blocked_prompt", 0.0, token)
            aimed = opts.fault_target in ("all", provider)
            outcome = hits[0] if hits and aimed else "success"
            variant = 0
            if outcome == "success" and admitted.wants_image:
                if online:
                    self._quota_used[provider] = used + 1
                # The same prompt twice (count: 2) gives two different pictures, as a real
                # model does; still deterministic for a given sequence of requests.
                variant = self._variants.get((provider, admitted.prompt), 0)
                self._variants[(provider, admitted.prompt)] = variant + 1
            if outcome == "timeout":
                return Decision(outcome, opts.hang, token)
            front_door = outcome in ("overloaded", "rate_limited")
            return Decision(outcome, 0.0 if front_door else latency, token, variant)

    def store_file(self, name: str, mime_type: str, data: bytes) -> None:
        """Keep an image for GET /_sim/files/NAME (the most recent few only)."""
        with self._lock:
            self._files[name] = (mime_type, data)
            while len(self._files) > _MAX_FILES:
                self._files.popitem(last=False)

    def file(self, name: str) -> tuple[str, bytes] | None:
        """(MIME type, bytes) of a kept image, or None."""
        with self._lock:
            return self._files.get(name)

    # --- admin -------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def metadata_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._metadata_log]

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
