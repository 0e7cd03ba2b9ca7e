"""What every provider shares on the wire: one capped, timed HTTP exchange, and the helpers
for reading any answer (JSON or not) without trusting its shape.

Transport failures become TransientError here, so providers only classify real responses.
Nothing raised from this module carries the API key: every message goes through `redact`.
"""

from __future__ import annotations

import json as jsonlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import IO, Any

import httpx
import pybase64

from nbbatch.errors import FatalError, TransientError
from nbbatch.images import NotAnImageError, detect_image
from nbbatch.providers.answer_json import parse_json
from nbbatch.providers.base import GeneratedImage
from nbbatch.providers.body import ACCEPT_ENCODING, BadEncoding, BodyTooLarge, read_capped
from nbbatch.providers.deadline import running_deadline
from nbbatch.redaction import Redactor

Redact = Callable[[str], str]
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SNIPPET = 200  # characters of a non-JSON body quoted in a message
_KEY_MARGIN = 1024  # read this much past the snippet, so a key it cuts is still redacted

# Failures before the request left this machine: the provider cannot have charged for them.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: httpx.Headers
    body: bytes
    latency: float  # seconds from sending the request to the last byte of the body


def new_client(transport: httpx.AsyncBaseTransport | None, timeout: float) -> httpx.AsyncClient:
    """One client per provider. Redirects are never followed (the key must not travel to
    another host). The total deadline is enforced around each request by the functions
    below, in time the process was running (deadline.py); httpx times only the connection,
    since its own timers would fire on an answer that arrived while the process was stopped.
    Bodies are decoded by body.py, within their cap."""
    return httpx.AsyncClient(transport=transport, follow_redirects=False,
                             timeout=httpx.Timeout(None, connect=timeout),
                             headers={"User-Agent": "nbbatch",
                                      "Accept-Encoding": ACCEPT_ENCODING})


def decode_base64(text: str | bytes) -> bytes:
    """Base64 image data, strictly checked (binascii.Error, a ValueError, otherwise).
    pybase64 decodes with SIMD: a 1.5 MB image in 0.1 ms where the standard library takes
    3.5 ms, the largest share of reading a batch results line."""
    return pybase64.b64decode(text, validate=True)


def redactor(secret: str | None) -> Redactor:
    return Redactor([secret])


# Seconds: a server that asks for longer asks for "not today" (31 years is as good as never).
LONGEST_SERVER_DELAY = 1e9


def server_delay(seconds: float) -> float | None:
    """A delay a server asked for, made sane: None for NaN or a negative number, and at most
    LONGEST_SERVER_DELAY (an overflow such as 1e400 or 300 digits reads as infinite)."""
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, LONGEST_SERVER_DELAY)


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, else `Retry-After` (seconds or date)."""
    headers = httpx.Headers(headers)  # case-insensitive lookups whatever we were given
    for name, per_second in (("retry-after-ms", 1000), ("retry-after", 1)):
        text = (headers.get(name) or "").strip()
        try:
            value = server_delay(float(text) / per_second) if text else None
        except ValueError:  # Retry-After may be an HTTP date
            value = _seconds_until(text, now) if per_second == 1 else None
        if value is not None:
            return value
    return None


def _seconds_until(date: str, now: float | None) -> float | None:
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return server_delay(max(0.0, when.timestamp() - (time.time() if now is None else now)))


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    json: object,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
    provider: str,
    redact: Redact,
) -> RawResponse:
    """POST `json` and read the whole answer, whatever its status, within `timeout` seconds.

    Raises TransientError for transport failures, a body over `max_bytes` and the deadline;
    never follows redirects (a 3xx is returned like any other response).
    """
    content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
    return await _exchange(
        client, "POST", url, {"content": content}, headers=headers, timeout=timeout,
        max_bytes=max_bytes, provider=provider, redact=redact,
    )


async def post_multipart(
    client: httpx.AsyncClient,
    url: str,
    *,
    data: Mapping[str, str],
    files: Sequence[tuple[str, tuple[str | None, bytes | IO[bytes], str | None]]],
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
    provider: str,
    redact: Redact,
) -> RawResponse:
    """POST a multipart/form-data body: text `data` fields, then `files` as
    (field name, (file name, bytes, content type)), repeated names allowed; a part with no
    file name is a plain text field (a form of such parts alone stays multipart). Otherwise
    exactly post_json: one deadline, a size cap, no redirects, TransientError on transport
    failures. httpx sets the Content-Type with its boundary; do not pass one in `headers`.
    """
    return await _exchange(
        client, "POST", url, {"data": dict(data), "files": list(files)}, headers=headers,
        timeout=timeout, max_bytes=max_bytes, provider=provider, redact=redact,
    )


async def get_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int,
    provider: str,
    redact: Redact,
    follow_redirects: bool = False,
) -> RawResponse:
    """GET `url` with the same deadline, cap and error mapping as post_json."""
    return await _exchange(
        client, "GET", url, {}, headers=headers or {}, timeout=timeout, max_bytes=max_bytes,
        provider=provider, redact=redact, follow_redirects=follow_redirects,
    )


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
    provider: str,
    redact: Redact,
    follow_redirects: bool = False,
) -> RawResponse:
    """Send one request (`body`: build_request's content/data/files) and read all of the answer."""
    sent = False  # set once the request body has gone out (seen through httpcore's trace hook)
    got_headers = False

    async def trace(event: str, info: object) -> None:  # httpcore awaits it on an async client
        nonlocal sent
        if event.endswith("send_request_body.complete"):
            sent = True

    def transient(message: str, billed: bool) -> TransientError:
        return TransientError(redact(message), provider=provider, possibly_billed=billed)

    start = time.monotonic()
    try:
        # httpx's timeouts are per read; the whole exchange gets one deadline here.
        async with running_deadline(timeout) as deadline:
            request = client.build_request(
                method, url, **body, headers={**headers}, extensions={"trace": trace}
            )
            response = await client.send(request, stream=True, follow_redirects=follow_redirects)
            try:
                got_headers = True
                body_bytes = await read_capped(response, max_bytes)
                deadline.complete()  # a whole answer is used, whatever the clock says now
            finally:
                await response.aclose()
    except TimeoutError:
        raise transient(
            f"no complete response within {timeout:g} s", sent or got_headers
        ) from None
    except BodyTooLarge:
        raise transient(f"response larger than {max_bytes} bytes", True) from None
    except BadEncoding as exc:
        raise transient(str(exc), True) from None
    except httpx.LocalProtocolError as exc:  # the request itself cannot be sent as built
        raise FatalError(redact(f"cannot send the request to {url}: {exc}"),
                         provider=provider) from None
    except UnicodeEncodeError:  # a header value that is not ASCII: never echoed, it may be a key
        raise FatalError("cannot send the request: a header value is not ASCII text (check "
                         "the API key variable and the provider's options)",
                         provider=provider) from None
    except httpx.UnsupportedProtocol as exc:
        raise FatalError(
            redact(f"cannot send to {url}: {exc} (check base_url)"), provider=provider
        ) from None
    except _NOT_SENT as exc:
        raise transient(f"could not connect: {_describe(exc)}", False) from None
    except (httpx.WriteError, httpx.WriteTimeout) as exc:
        raise transient(f"could not send the request: {_describe(exc)}", sent) from None
    except httpx.TimeoutException as exc:
        raise transient(f"timed out waiting for the response: {_describe(exc)}", True) from None
    except httpx.HTTPError as exc:  # read errors, connection reset, bad compression...
        raise transient(f"connection failed: {_describe(exc)}", True) from None
    return RawResponse(
        response.status_code, response.headers, body_bytes, time.monotonic() - start
    )


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# -- reading answers -----------------------------------------------------------------------


def parse_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (see parse_json)."""
    doc = parse_json(body)
    return doc if isinstance(doc, dict) else None


def looks_like_json(body: bytes) -> bool:
    """A body that starts like JSON: cut short, it was probably generated (possibly billed)."""
    return body.lstrip()[:1] in (b"{", b"[")


def describe_body(code: int, body: bytes, redact: Redact) -> str:
    """A message for a response without the API's JSON: a proxy's page, Cloudflare's text."""
    head = f"HTTP {code} {httpx.codes.get_reason_phrase(code)}".rstrip()
    if not body.strip():
        return f"{head} with an empty body"
    title = _TITLE.search(body[:4096])
    # Redact before cutting: a key straddling the cut would otherwise leave its first half.
    window = title.group(1) if title else body[: _SNIPPET + _KEY_MARGIN]
    snippet = redact(window.decode("utf-8", "replace"))[:_SNIPPET]
    kind = "HTML page" if title or body.lstrip()[:1] == b"<" else "non-JSON body"
    return f"{head} ({kind}: {snippet.strip()})"


def get(obj: object, *names: str) -> Any:
    """The first of `names` set (not None) in `obj` when it is a mapping; else None."""
    if isinstance(obj, dict):
        for name in names:
            if obj.get(name) is not None:
                return obj[name]
    return None


def as_dict(obj: object) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


def as_text(obj: object) -> str | None:
    return obj if isinstance(obj, str) and obj else None


def as_number(obj: object) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    return float(obj) if math.isfinite(obj) else None


def image_from_bytes(data: bytes, model: str, usage: Mapping[str, Any], request_id: str | None,
                     text: str | None, ctx: dict[str, Any], redact: Redactor) -> GeneratedImage:
    """The image, typed by its bytes; bytes that are no image are a possibly billed
    TransientError (they were generated). `ctx`: the error's provider, status, usage..."""
    try:
        info = detect_image(data)
    except NotAnImageError as exc:
        raise TransientError(redact.message(f"received bytes are not an image: {exc}"),
                             possibly_billed=True, **ctx) from None
    return GeneratedImage(data=data, mime_type=info.mime_type, model=model, usage=usage,
                          request_id=request_id, text=text, pixels=(info.width, info.height))
