"""A local Gemini `generateContent` server with latency and fault injection.

One core (`SimulatorCore.handle`: method, path, headers, body in; status, headers, body and a
delay out) serves two front ends: `SimulatorServer`, real HTTP on 127.0.0.1 for
`nbbatch simulate` and end-to-end tests, and `providers.simulator.SimulatorTransport`, an
in-process httpx transport. Wire shapes follow shared/reference/gemini-api.md §3, §4 and §9.

Order of checks for one request: key (403/400), model (404), body (400), outage window (503),
daily quota (429 per-day), the "[blocked]" prompt word, then the random faults, drawn
independently in FAULTS order with the first hit winning. Front-door rejections answer at
once; what reaches "the model" (success, internal, blocked, no image) waits the latency first.

Admin routes: GET /_sim/requests, GET /_sim/stats, POST /_sim/reset-quota, POST /_sim/configure.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from nbbatch.catalog import MODELS, ModelInfo
from nbbatch.sim_images import draw_image

FAULTS = ("overloaded", "rate_limited", "internal", "timeout", "blocked", "no_image")
OUTCOMES = ("success", *FAULTS, "quota", "auth", "invalid", "not_found")
_FAULT_KEYS = {"503": "overloaded", "429": "rate_limited", "500": "internal"}
BLOCKED_WORD, INVALID_WORD = "[blocked]", "[invalid]"


@dataclass
class SimulatorOptions:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, drawn uniformly per request
    overloaded: float = 0.0  # fault probabilities, 0..1
    rate_limited: float = 0.0
    retry_delay: float = 1.0  # RetryInfo.retryDelay of per-minute 429s, seconds
    internal: float = 0.0
    timeout: float = 0.0
    hang: float = 600.0  # how long a timeout fault holds the request before its 504
    blocked: float = 0.0
    no_image: float = 0.0
    daily_quota: int | None = None  # successful images before every request gets a per-day 429
    outage: tuple[float, float] | None = None  # seconds since start: every request gets 503
    api_key: str | None = None  # None: any non-empty key is accepted
    seed: int | None = None
    scale: int = 4  # image pixels = real 1K size / scale

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


def _json(status: int, doc: Any, delay: float = 0.0) -> SimResponse:
    body = json.dumps(doc).encode()
    return SimResponse(status, {"Content-Type": "application/json; charset=UTF-8"}, body, delay)


def _error(code: int, status: str, message: str, details: list | None = None) -> SimResponse:
    doc: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        doc["details"] = details
    return _json(code, {"error": doc})


class _Reject(Exception):
    """A request answered before it reaches the model (auth, routing, validation)."""

    def __init__(self, response: SimResponse, outcome: str) -> None:
        super().__init__(outcome)
        self.response, self.outcome = response, outcome


def _invalid(message: str) -> _Reject:
    return _Reject(_error(400, "INVALID_ARGUMENT", message), "invalid")


@dataclass
class _Parsed:
    prompt: str
    references: int
    aspect_ratio: str | None
    image_size: str | None
    modalities: tuple[str, ...]


class SimulatorCore:
    def __init__(self, options: SimulatorOptions, clock: Callable[[], float] = time.monotonic):
        self.options = options
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._rng = random.Random(options.seed)
        self._log: list[dict[str, Any]] = []
        self._quota_used = 0

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> SimResponse:
        url = urlsplit(path)
        route = unquote(url.path)
        if route.startswith("/v1beta/models/") and route.endswith(":generateContent"):
            if method.upper() == "POST":
                model = route[len("/v1beta/models/") : -len(":generateContent")]
                headers = {k.lower(): v for k, v in headers.items()}
                return self._generate(model, headers, parse_qs(url.query), body)
        admin = {
            ("GET", "/_sim/requests"): lambda: _json(200, self.requests()),
            ("GET", "/_sim/stats"): lambda: _json(200, self.stats()),
            ("POST", "/_sim/reset-quota"): lambda: _json(200, self.reset_quota()),
            ("POST", "/_sim/configure"): lambda: self._configure_route(body),
        }
        action = admin.get((method.upper(), route))
        if action:
            return action()
        return _error(404, "NOT_FOUND", f"No route for {method} {route} on the simulator.")

    # --- admin -------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict.fromkeys(OUTCOMES, 0)
            for entry in self._log:
                counts[entry["outcome"]] += 1
            return {"requests": len(self._log), "quota_used": self._quota_used, "outcomes": counts}

    def reset_quota(self) -> dict[str, Any]:
        with self._lock:
            self._quota_used = 0
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
            return _error(400, "INVALID_ARGUMENT", str(e))
        return _json(200, dataclasses.asdict(options))

    # --- generateContent -------------------------------------------------------------

    def _generate(
        self, model: str, headers: Mapping[str, str], query: dict[str, list[str]], body: bytes
    ) -> SimResponse:
        t = self._clock() - self._start
        entry: dict[str, Any] = {"t": round(t, 3), "model": model, "prompt": None, "references": 0}
        with self._lock:
            opts = self.options
        try:
            _check_key(opts, headers.get("x-goog-api-key") or (query.get("key") or [""])[0])
            info = MODELS.get(model)
            if info is None:
                raise _Reject(_error(404, "NOT_FOUND", (
                    f"models/{model} is not found for API version v1beta, or is not supported "
                    "for generateContent. Call ListModels to see the list of available models "
                    "and their supported methods.")), "not_found")
            parsed = _parse_body(body)
            entry.update(prompt=parsed.prompt, references=parsed.references)
            _validate(parsed, info)
            decision, delay, response_id = self._decide(opts, parsed, t)
            response, outcome = _render(decision, opts, info, parsed, delay, response_id)
        except _Reject as r:
            outcome, response = r.outcome, r.response
        entry.update(status=response.status, outcome=outcome)
        with self._lock:
            self._log.append(entry)
        return response

    def _decide(self, opts: SimulatorOptions, parsed: _Parsed, t: float) -> tuple[str, float, str]:
        """Pick the outcome under the lock: quota counting and seeded draws stay consistent."""
        with self._lock:
            # Always draw the same numbers so a seed gives the same sequence whatever happens.
            latency = opts.latency[0] + (opts.latency[1] - opts.latency[0]) * self._rng.random()
            hits = [name for name in FAULTS if self._rng.random() < getattr(opts, name)]
            response_id = base64.urlsafe_b64encode(self._rng.randbytes(16)).decode().rstrip("=")
            if opts.outage and opts.outage[0] <= t < opts.outage[1]:
                return "overloaded", 0.0, response_id
            if opts.daily_quota is not None and self._quota_used >= opts.daily_quota:
                return "quota", 0.0, response_id
            if BLOCKED_WORD in parsed.prompt:
                return "blocked_prompt", 0.0, response_id
            outcome = hits[0] if hits else "success"
            if outcome == "success" and "IMAGE" in parsed.modalities:
                self._quota_used += 1
            if outcome == "timeout":
                return outcome, opts.hang, response_id
            front_door = outcome in ("overloaded", "rate_limited")
            return outcome, 0.0 if front_door else latency, response_id


def _check_key(opts: SimulatorOptions, key: str) -> None:
    if not key:
        raise _Reject(_error(403, "PERMISSION_DENIED", (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.")),
            "auth")
    if opts.api_key is not None and key != opts.api_key:
        message = "API key not valid. Please pass a valid API key."
        raise _Reject(_error(400, "INVALID_ARGUMENT", message, [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": message},
        ]), "auth")


# Known request fields, compared without case or underscores: both spellings are accepted.
_TOP_FIELDS = {"contents", "generationconfig", "safetysettings", "tools", "toolconfig",
               "systeminstruction", "cachedcontent", "servicetier"}
_GEN_FIELDS = {"responsemodalities", "imageconfig", "candidatecount", "seed", "temperature",
               "topp", "topk", "maxoutputtokens", "stopsequences", "thinkingconfig",
               "responsemimetype", "presencepenalty", "frequencypenalty", "mediaresolution"}
_IMAGE_FIELDS = {"aspectratio", "imagesize"}


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


def _get(doc: Mapping[str, Any], name: str) -> Any:
    return next((v for k, v in doc.items() if _norm(k) == name), None)


def _object(value: Any, where: str, known: set[str] | None) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    for name in value:
        if known is not None and _norm(name) not in known:
            at = f" at '{where}'" if where else ""
            raise _invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: '
                           "Cannot find field.")
    return value


def _parse_body(body: bytes) -> _Parsed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON payload received. Unexpected token.") from None
    doc = _object(doc, "", _TOP_FIELDS)
    contents = _get(doc, "contents")
    if not contents or not isinstance(contents, list):
        raise _invalid("* GenerateContentRequest.contents: contents is not specified\n")
    texts, references = [], 0
    for i, content in enumerate(contents):
        parts = _get(_object(content, f"contents[{i}]", None), "parts")
        if not parts or not isinstance(parts, list):
            raise _invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must "
                           "not be empty.\n")
        for j, part in enumerate(_object(p, f"contents[{i}].parts", None) for p in parts):
            if isinstance(_get(part, "text"), str):
                texts.append(_get(part, "text"))
            inline = _get(part, "inlinedata")
            if inline is not None:
                data = _get(_object(inline, "inline_data", None), "data")
                try:
                    base64.b64decode(data or "", validate=True)
                except (ValueError, TypeError):
                    raise _invalid(f"Invalid value at 'contents[{i}].parts[{j}].inline_data.data' "
                                   "(TYPE_BYTES), Base64 decoding failed") from None
                references += 1
    config = _object(_get(doc, "generationconfig"), "generation_config", _GEN_FIELDS)
    image = _object(_get(config, "imageconfig"), "generation_config.image_config", _IMAGE_FIELDS)
    asked = _get(config, "responsemodalities") or ["TEXT", "IMAGE"]  # the default: both
    modalities = tuple(str(m).upper() for m in asked)
    for n, m in enumerate(modalities):
        if m not in ("TEXT", "IMAGE", "AUDIO"):
            raise _invalid(f"Invalid value at 'generation_config.response_modalities[{n}]' "
                           f'(type.googleapis.com/google.ai.generativelanguage.v1beta.'
                           f'GenerationConfig.Modality), "{m}"')
    ratio, size = _get(image, "aspectratio"), _get(image, "imagesize")
    return _Parsed("\n".join(texts), references, ratio, size, modalities)


def _validate(p: _Parsed, info: ModelInfo) -> None:
    """What the model itself refuses (real messages unverified, reference §9)."""
    if p.aspect_ratio is not None and p.aspect_ratio not in info.aspect_ratios:
        raise _invalid(f"Unsupported aspect ratio {p.aspect_ratio!r} for model {info.id}. "
                       f"Supported values: {', '.join(info.aspect_ratios)}.")
    if p.image_size is not None and p.image_size not in info.image_sizes:
        raise _invalid(f"Unsupported image size {p.image_size!r} for model {info.id}. "
                       f"Supported values: {', '.join(info.image_sizes)} (upper-case K).")
    if INVALID_WORD in p.prompt:
        raise _invalid("Request contains an invalid argument.")


# --- response bodies -------------------------------------------------------------------

_HELP = {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
    "description": "Learn more about Gemini API quotas",
    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded for "
    "metric: {metric}, limit: {limit}, model: {model}\nPlease retry in {delay}."
)
_SAFETY_MESSAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's [Generative AI Prohibited Use policy](https://policies.google.com/terms/"
    "generative-ai/use-policy). You will not be charged for blocked images. Try rephrasing the "
    "prompt. If you think this was an error, [send feedback](https://ai.google.dev/gemini-api/"
    "docs/troubleshooting)."
)


def _duration(seconds: float) -> str:
    """A protobuf Duration string: 1.0 -> "1s", 34.4 -> "34.4s"."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _quota_error(model: str, *, per_day: bool, limit: int, retry_delay: float) -> SimResponse:
    if per_day:
        metric = "generativelanguage.googleapis.com/generate_requests_per_model_per_day"
        quota_id = "GenerateRequestsPerDayPerProjectPerModel"
    else:
        metric = "generativelanguage.googleapis.com/generate_content_paid_tier_requests"
        quota_id = "GenerateRequestsPerMinutePerProjectPerModel"
    delay = _duration(retry_delay)
    violation = {"quotaMetric": metric, "quotaId": quota_id, "quotaValue": str(limit),
                 "quotaDimensions": {"location": "global", "model": model}}
    return _error(429, "RESOURCE_EXHAUSTED",
                  _QUOTA_MESSAGE.format(metric=metric, limit=limit, model=model, delay=delay), [
        _HELP,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ])


def _image_tokens(model: str, size: str | None) -> int:
    """Output image tokens (reference §3.5; 3.1-flash sizes other than 1K scaled from price)."""
    if model.startswith("gemini-2.5"):
        return 1290
    if "flash" in model:
        return {"512": 747, "2K": 1680, "4K": 2520}.get(size or "1K", 1120)
    return 2000 if size == "4K" else 1120


def _render(
    decision: str, opts: SimulatorOptions, info: ModelInfo, p: _Parsed, delay: float, rid: str
) -> tuple[SimResponse, str]:
    """The response for a decided outcome, and the outcome to log."""
    model = info.id
    if decision in ("overloaded", "rate_limited", "quota", "internal", "timeout"):
        if decision == "overloaded":
            error = _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        elif decision == "rate_limited":
            error = _quota_error(model, per_day=False, limit=20, retry_delay=opts.retry_delay)
        elif decision == "quota":
            limit = opts.daily_quota or 0
            error = _quota_error(model, per_day=True, limit=limit, retry_delay=opts.retry_delay)
        elif decision == "internal":
            error = _error(500, "INTERNAL", "An internal error has occurred. Please retry or "
                           "report in https://developers.generativeai.google/guide/troubleshooting")
        else:
            error = _error(504, "DEADLINE_EXCEEDED",
                           "Deadline expired before operation could complete.")
        error.delay = delay
        return error, decision

    thinks = model.startswith("gemini-3")
    prompt_tokens = max(1, len(p.prompt) // 4)
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens + 258 * p.references}
    details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if p.references:
        details.append({"modality": "IMAGE", "tokenCount": 258 * p.references})
    usage["promptTokensDetails"] = details
    doc: dict[str, Any] = {}
    outcome = decision
    if decision == "blocked_prompt":
        outcome, doc["promptFeedback"] = "blocked", {"blockReason": "PROHIBITED_CONTENT"}
    elif decision == "no_image":
        doc["candidates"] = [{"content": {}, "finishReason": "NO_IMAGE", "index": 0}]
    elif "IMAGE" not in p.modalities:  # the client asked for text only: it gets text only
        outcome = "no_image"
        parts = [{"text": "Here is a description instead of an image."}]
        doc["candidates"] = [{"content": {"parts": parts, "role": "model"},
                              "finishReason": "STOP", "index": 0}]
    elif decision == "blocked":
        usage["candidatesTokenCount"] = 0
        doc["candidates"] = [{"content": {}, "finishReason": "IMAGE_SAFETY",
                              "finishMessage": _SAFETY_MESSAGE, "index": 0}]
    else:
        image_tokens = _image_tokens(model, p.image_size)
        doc["candidates"] = [{"content": {"parts": _image_parts(model, p, opts.scale),
                                          "role": "model"}, "finishReason": "STOP", "index": 0}]
        usage["candidatesTokenCount"] = image_tokens
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": image_tokens}]
    if thinks and "candidates" in doc:
        usage["thoughtsTokenCount"] = 200 + len(p.prompt) % 500
    usage["totalTokenCount"] = sum(
        usage.get(k, 0) for k in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
    )
    usage["serviceTier"] = "standard"
    doc.update(usageMetadata=usage, modelVersion=model, responseId=rid)
    return _json(200, doc, delay), outcome


def _image_parts(model: str, p: _Parsed, scale: int) -> list[dict[str, Any]]:
    def inline(variant: int, mime: str) -> dict[str, str]:
        image = draw_image(p.prompt, aspect_ratio=p.aspect_ratio, mime_type=mime,
                           scale=scale, variant=variant)
        return {"mimeType": mime, "data": base64.b64encode(image).decode()}

    if not model.startswith("gemini-3"):  # 2.5: PNG, no thoughts, a line of text when allowed
        text = [{"text": "Here is the image you asked for."}] if "TEXT" in p.modalities else []
        return [*text, {"inlineData": inline(0, "image/png")}]
    signature = hashlib.sha256(f"{model}\x00{p.prompt}".encode()).digest() * 2
    return [
        {"text": f"**Composing the scene**\n\nI'm planning the layout for: {p.prompt[:80]}",
         "thought": True},
        {"inlineData": inline(1, "image/jpeg"), "thought": True},  # interim image, not billed
        {"inlineData": inline(0, "image/jpeg"),
         "thoughtSignature": base64.b64encode(signature).decode()},
    ]


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
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


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
            response = _error(500, "INTERNAL", f"simulator error: {e!r}")
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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
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
