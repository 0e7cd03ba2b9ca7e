"""Every answer of Stability's generate endpoints, classified: an image or a ProviderError.

Successes come as raw image bytes (`Accept: image/*`, with `finish-reason` and `seed`
headers) or as JSON {"image": base64, "finish_reason", "seed"}. A `CONTENT_FILTERED` finish
means Stability blurred the image: it is blocked, never a done image. Errors are JSON
{"id", "name", "errors": [...]} (the older v1 API: "message" instead of "errors"):

    401                              key rejected          FatalError
    402, payment_required, "insufficient credits/balance"  QuotaExhaustedError
    403 content_moderation (any status with that name)    BlockedError (not charged)
    403 otherwise                    not allowed           FatalError
    404                              wrong base_url        UnknownModelError
    429 "more than 150 requests in 10 seconds"            TransientError, overload; Stability
                                     locks the key out for 60 s, so that is the wait unless
                                     the answer names another
    408, 409, 5xx                    TransientError (502/503 count as overload)
    400, 413, 422, other 4xx         InvalidRequestError
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any, NoReturn

import httpx

from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.providers.base import GeneratedImage
from nbbatch.providers.wire import (
    as_text,
    decode_base64,
    describe_body,
    get,
    image_from_bytes,
    looks_like_json,
    parse_object,
    retry_after_from_headers,
)
from nbbatch.redaction import Redactor

DEFAULT_KEY_ENV = "STABILITY_API_KEY"
RATE_LIMIT_LOCKOUT = 60.0  # seconds Stability refuses a key after its 429
QUOTA_NAMES = frozenset({"payment_required", "insufficient_balance", "insufficient_credits"})


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    redact: Redactor,
    model: str,
    key_env: str | None = None,
    recorded: Mapping[str, Any] | None = None,
) -> GeneratedImage:
    """Turn one HTTP response into its image, or raise the ProviderError it means.

    `recorded` is what the request chose that the image's usage should keep (the aspect
    ratio sent, and the one asked for when they differ); `key_env` names the key's variable
    in the message for a rejected key.
    """
    headers = httpx.Headers(headers)
    request_id = headers.get("x-request-id")
    ctx: dict[str, Any] = {"provider": provider, "status": status,
                           "request_id": redact(request_id) if request_id else None}
    doc = parse_object(body)
    if 200 <= status < 300 and not (doc and ("errors" in doc or "name" in doc)):
        return _success(headers, body, doc, ctx, model, redact, dict(recorded or {}))
    code = status if not 200 <= status < 300 else 500  # an error document inside a 200
    _raise_for_error(code, headers, body, doc, ctx, redact, key_env or DEFAULT_KEY_ENV)


def _success(
    headers: httpx.Headers,
    body: bytes,
    doc: dict[str, Any] | None,
    ctx: dict[str, Any],
    model: str,
    redact: Redactor,
    usage: dict[str, Any],
) -> GeneratedImage:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if doc is None and looks_like_json(body):
        raise TransientError("truncated or invalid JSON", possibly_billed=True, **ctx)
    if doc is None and (content_type == "text/html" or body.lstrip()[:1] == b"<" or not body):
        raise TransientError(redact.message(describe_body(ctx["status"], body, redact)), **ctx)
    if doc is None:  # raw image bytes: finish reason and seed ride in headers
        finish, seed, data = headers.get("finish-reason"), headers.get("seed"), body
    else:
        finish, seed = as_text(doc.get("finish_reason")), doc.get("seed")
        encoded = doc.get("image")
        if not isinstance(encoded, str) or not encoded:
            raise TransientError("no image in the response (no \"image\" field)", **ctx)
        try:
            data = decode_base64(encoded)
        except (binascii.Error, ValueError):
            raise TransientError("image data is not valid base64", possibly_billed=True,
                                 **ctx) from None
    finish = (finish or "SUCCESS").strip().upper()
    if isinstance(seed, str) and seed.strip().isdigit():
        seed = int(seed)
    usage.update(finish_reason=redact(finish)[:40])  # server text, kept in the ledger
    if isinstance(seed, int) and not isinstance(seed, bool):
        usage["seed"] = seed
    ctx["usage"] = usage
    if "FILTER" in finish:
        raise BlockedError(redact.message(f"Stability's content moderation blurred the image "
                                          f"(finish-reason {finish}); it is not saved"), **ctx)
    if finish == "ERROR":
        raise TransientError("Stability reported a failed generation (finish-reason ERROR)",
                             **ctx)
    return image_from_bytes(data, model, usage, ctx["request_id"], None, ctx, redact)


def _raise_for_error(
    status: int,
    headers: httpx.Headers,
    body: bytes,
    doc: dict[str, Any] | None,
    ctx: dict[str, Any],
    redact: Redactor,
    key_env: str,
) -> NoReturn:
    name = (as_text(get(doc, "name")) or "").lower()
    errors = get(doc, "errors")
    texts = [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []
    said = "; ".join(texts) or as_text(get(doc, "message")) or ""
    text = redact.message(f"{name}: {said}" if name and said else said or name
                          or describe_body(status, body, redact))
    lowered = text.lower()

    if 300 <= status < 400:
        where = headers.get("location", "elsewhere")
        raise FatalError(redact.message(f"unexpected redirect (HTTP {status}) to {where}; "
                                        "check base_url"), **ctx)
    if name == "content_moderation":
        raise BlockedError(text, **ctx)
    if status == 401 or name == "unauthorized":
        raise FatalError(f"API key rejected (HTTP {status}): {text} Check {key_env}.", **ctx)
    if (status == 402 or name in QUOTA_NAMES
            or ("insufficient" in lowered and ("credit" in lowered or "balance" in lowered))):
        raise QuotaExhaustedError(redact.message(f"out of credits: {text}"), **ctx)
    if status == 403:
        raise FatalError(f"not allowed (HTTP 403): {text} Check {key_env} and the account.",
                         **ctx)
    if status == 404:
        raise UnknownModelError(f"{text} (check the model name and base_url)", **ctx)
    waited = retry_after_from_headers(headers)
    if status == 429:
        raise TransientError(text, overload=True,
                             retry_after=RATE_LIMIT_LOCKOUT if waited is None else waited, **ctx)
    if status >= 500 or status in (408, 409):
        raise TransientError(text, overload=status in (502, 503), retry_after=waited, **ctx)
    raise InvalidRequestError(text, **ctx)
