"""What the OpenAI Images API answers, read: an image, a URL to fetch it from, or the
ProviderError it means.

Errors are read from `error.code` and `error.type` first and the HTTP status after: OpenAI and
the gateways that copy its API agree on the codes more than on the statuses.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any, NoReturn

import httpx

from nbbatch import catalog
from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    ProviderError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.providers.answer_json import unparsed
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageLink
from nbbatch.providers.wire import (
    as_dict,
    as_text,
    decode_base64,
    describe_body,
    get,
    image_from_bytes,
    parse_object,
    retry_after_from_headers,
)
from nbbatch.redaction import Redactor

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_LIMIT_ZERO = re.compile(r"\blimit: 0(?![\d.])", re.IGNORECASE)  # the tier has no quota here

# error.code values that mean the account has no money or credit left: nothing will work today.
QUOTA_CODES = frozenset({
    "insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded", "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
})  # fmt: skip
BLOCKED_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
OVERLOAD_CODES = frozenset({"rate_limit_exceeded", "slow_down", "server_is_overloaded"})
OVERLOAD_TYPES = frozenset({"requests", "rate_limit_error", "service_unavailable_error"})


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    redact: Redactor,
    model: str,
    key_env: str | None = None,
) -> GeneratedImage | ImageLink:
    """Turn one HTTP response into its image (or the URL to fetch it from), or raise the
    ProviderError it means. `key_env` names the key's variable in the
    message for a rejected key.
    """
    return classify_document(status, headers, parse_object(body), body, provider=provider,
                             redact=redact, model=model, key_env=key_env)


def classify_document(
    status: int,
    headers: Mapping[str, str],
    doc: dict[str, Any] | None,
    body: bytes = b"",
    *,
    provider: str,
    redact: Redactor,
    model: str,
    key_env: str | None = None,
) -> GeneratedImage | ImageLink:
    """`classify` for an answer already parsed (None: not a JSON object; `body` is then
    quoted). Batch results arrive as documents inside a file."""
    headers = httpx.Headers(headers)
    usage = redact.scrub(as_dict(get(doc, "usage"))) or None
    request_id = headers.get("x-request-id")
    ctx: dict[str, Any] = {"provider": provider, "status": status,
                           "request_id": redact(request_id) if request_id else None,
                           "usage": usage}
    error = get(doc, "error")
    if 200 <= status < 300 and error is None:
        if doc is None:
            # A cut-off JSON answer was probably generated, so possibly billed; a portal's page not.
            cut_json = body.lstrip()[:1] in (b"{", b"[")
            message = unparsed(body) if cut_json else describe_body(status, body, redact)
            raise TransientError(redact.message(message), possibly_billed=cut_json, **ctx)
        return _read_success(doc, ctx, model, redact)
    _raise_for_error(status, headers, body, doc, ctx, redact, model, key_env)


def _read_success(
    doc: dict[str, Any], ctx: dict[str, Any], model: str, redact: Redactor
) -> GeneratedImage | ImageLink:
    data = doc.get("data")
    first = as_dict(data[0]) if isinstance(data, list) and data else {}
    revised = as_text(first.get("revised_prompt"))
    text = redact(revised) if revised else None  # what the server says is kept: no echoes
    usage = ctx["usage"] or {}
    encoded = first.get("b64_json")
    if isinstance(encoded, str) and encoded:
        try:
            image_bytes = decode_base64(encoded)
        except (binascii.Error, ValueError):
            raise TransientError("image data is not valid base64", possibly_billed=True,
                                 **ctx) from None
        return image_from_bytes(image_bytes, model, usage, ctx["request_id"], text, ctx, redact)
    url = as_text(first.get("url"))
    if url:
        return ImageLink(url, model, usage, ctx["request_id"], text)
    reason = "no data" if not first else "no b64_json or url in data[0]"
    raise TransientError(f"no image in the response ({reason})", **ctx)


def check_answer(status: int, headers: Mapping[str, str], body: bytes, *, provider: str,
                 redact: Redactor, model: str, key_env: str | None = None) -> None:
    """Read the answer to `GET /models/{model}`: return when the model exists and the key is
    accepted, raise what the answer means otherwise (see Provider.check)."""
    doc = parse_object(body)
    if 200 <= status < 300:
        if doc is not None and isinstance(doc.get("id"), str):
            return
        raise CheckUnavailable(f"HTTP {status} without a model description")
    code = as_text(as_dict(get(doc, "error")).get("code"))
    if status == 404 and code != "model_not_found":  # a gateway without the route
        raise CheckUnavailable("the models route answered 404")
    ctx: dict[str, Any] = {"provider": provider, "status": status,
                           "request_id": httpx.Headers(headers).get("x-request-id"),
                           "usage": None}
    try:
        _raise_for_error(status, httpx.Headers(headers), body, doc, ctx, redact, model, key_env)
    except (FatalError, QuotaExhaustedError):
        raise
    except ProviderError as exc:
        raise CheckUnavailable(exc.message) from None


def _raise_for_error(
    status: int,
    headers: httpx.Headers,
    body: bytes,
    doc: dict[str, Any] | None,
    ctx: dict[str, Any],
    redact: Redactor,
    model: str,
    key_env: str | None,
) -> NoReturn:
    error = get(doc, "error")
    err = as_dict(error)
    code = as_text(err.get("code")) or ""
    kind = as_text(err.get("type")) or ""
    provider_message = as_text(err.get("message")) or as_text(error)
    message = redact.message(provider_message or describe_body(status, body, redact))
    waited = retry_after_from_headers(headers)
    should_retry = (headers.get("x-should-retry") or "").strip().lower()

    if 300 <= status < 400:
        where = headers.get("location", "elsewhere")
        raise FatalError(redact.message(f"unexpected redirect (HTTP {status}) to {where}; check "
                                  "base_url"), **ctx)
    if status in (401, 403) or code == "invalid_api_key":
        variable = key_env or DEFAULT_KEY_ENV
        what = "rejected" if status == 401 or code == "invalid_api_key" else "not allowed"
        raise FatalError(f"API key {what} (HTTP {status}): {message} Check {variable}.", **ctx)
    if code in QUOTA_CODES or kind == "insufficient_quota":
        raise QuotaExhaustedError(
            redact.message(f"quota exhausted ({code or kind}): {message}"), **ctx)
    if code in BLOCKED_CODES:
        raise BlockedError(message, **ctx)
    if code == "model_not_found" or status == 404:
        note = catalog.retirement_note(model)
        hint = f" ({note})" if note else ""
        if not hint and not provider_message:
            hint = " (check the model name and base_url)"
        raise UnknownModelError(message + hint, **ctx)
    if status == 429 or code in OVERLOAD_CODES or kind in OVERLOAD_TYPES:
        if _LIMIT_ZERO.search(provider_message or ""):  # "Limit: 0/1min": no quota at all
            raise QuotaExhaustedError(
                redact.message(f"quota exhausted (the limit is 0): {message}"), **ctx)
        if doc is None and status == 429:  # Cloudflare's "error code: 1015", text/plain
            edge = describe_body(status, body, redact)
            message = redact.message(f"rate limited at the edge: {edge}")
        raise TransientError(message, overload=True, retry_after=waited, **ctx)
    retriable = status >= 500 or status in (408, 409) or 200 <= status < 300
    if retriable and should_retry == "false":
        raise InvalidRequestError(redact.message(
            f"{message} (HTTP {status}; the server said not to retry: x-should-retry: false)"),
            **ctx)
    if retriable:
        raise TransientError(message, overload=status in (502, 503), retry_after=waited, **ctx)
    if should_retry == "true":  # an unexplained 4xx the server says is worth another try
        raise TransientError(message, retry_after=waited, **ctx)
    raise InvalidRequestError(message, **ctx)

