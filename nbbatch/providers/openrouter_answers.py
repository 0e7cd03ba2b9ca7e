"""Every answer of a chat-completions image request (OpenRouter and gateways like it),
classified: an image, a link to fetch it from, or a ProviderError.

The image is `choices[0].message.images[].image_url.url`, a base64 data URL; failing that,
an `image_url` part of `message.content`. A link (http or https) instead of a data URL is
returned as an ImageLink for the provider to download once. A 200 whose body holds an
`error` object failed after generation started, and is classified by its `error.code`:

    401                     key rejected                     FatalError
    402                     out of credits                   QuotaExhaustedError
    403 "Key limit exceeded" the key's own spending cap      QuotaExhaustedError
    403 otherwise           moderation flag or guardrail     BlockedError (OpenRouter's 403
                            is about content, not the key)
    400 "not a valid model ID", 404                          UnknownModelError
    408, 429, 5xx           TransientError; Retry-After honoured; 429, 502, 503 are overload
    400, 413, 422, other 4xx                                 InvalidRequestError
    200, text only          no image (a soft refusal)        TransientError
    200, finish_reason content_filter or a Gemini safety finish  BlockedError
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
from nbbatch.providers.base import GeneratedImage, ImageLink
from nbbatch.providers.google import BLOCKING_FINISH_REASONS
from nbbatch.providers.wire import (
    as_dict,
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

DEFAULT_KEY_ENV = "OPENROUTER_API_KEY"




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
    """Turn one HTTP response into its image (or the link to fetch it from), or raise the
    ProviderError it means. `key_env` names the key's variable for a rejected key."""
    headers = httpx.Headers(headers)
    doc = parse_object(body)
    request_id = as_text(get(doc, "id")) or headers.get("x-request-id")
    usage = _numbers(as_dict(get(doc, "usage")))
    ctx: dict[str, Any] = {"provider": provider, "status": status, "usage": usage or None,
                           "request_id": redact(request_id) if request_id else None}
    choice = _first_choice(doc)
    error = get(doc, "error") or get(choice, "error")
    if 200 <= status < 300 and error is None:
        if doc is None:
            billed = looks_like_json(body)  # a cut-off answer was probably generated
            text = "truncated or invalid JSON" if billed else describe_body(status, body, redact)
            raise TransientError(redact.message(text), possibly_billed=billed, **ctx)
        answered = as_text(doc.get("model"))
        return _read_success(choice, ctx, redact(answered) if answered else model, redact)
    code = status
    if 200 <= status < 300:  # failed after generation started: the code is in the body
        said = get(error, "code")
        code = said if isinstance(said, int) and 400 <= said < 600 else 502
    _raise_for_error(code, headers, body, error, ctx, redact, key_env or DEFAULT_KEY_ENV)


def _first_choice(doc: dict[str, Any] | None) -> dict[str, Any]:
    choices = get(doc, "choices")
    return as_dict(choices[0]) if isinstance(choices, list) and choices else {}


def _numbers(usage: dict[str, Any]) -> dict[str, Any]:
    """The usage report with numbers only (it goes to the ledger): nested counts kept."""
    out: dict[str, Any] = {}
    for key, value in usage.items():
        if isinstance(value, dict):
            if inner := _numbers(value):
                out[str(key)] = inner
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = value
    return out


def _read_success(
    choice: dict[str, Any], ctx: dict[str, Any], model: str, redact: Redactor
) -> GeneratedImage | ImageLink:
    reply = as_dict(choice.get("message"))
    content = reply.get("content")
    parts = content if isinstance(content, list) else [{"text": content}]
    said = " ".join(t for p in parts if isinstance(t := get(p, "text"), str))
    text = redact.message(said) if said.strip() else None
    usage = ctx["usage"] or {}
    for url in _image_urls(reply):
        if url.startswith("data:"):
            return image_from_bytes(_decode_data_url(url, ctx), model, usage,
                                    ctx["request_id"], text, ctx, redact)
        if url.startswith(("https://", "http://")):
            return ImageLink(url, model, usage, ctx["request_id"], text)
    finish = (as_text(choice.get("finish_reason")) or "").lower()
    native = (as_text(choice.get("native_finish_reason")) or "").upper()
    said = f": {text}" if text else ""
    if finish == "content_filter" or native in BLOCKING_FINISH_REASONS:
        why = native or finish
        raise BlockedError(redact.message(f"the model refused the image ({why}){said}"), **ctx)
    what = "the model answered with text only" if text else "no message"
    raise TransientError(redact.message(f"no image in the response ({what}){said}"), **ctx)


def _image_urls(reply: dict[str, Any]) -> list[str]:
    """URLs of images in `message.images`, then in `image_url` parts of `message.content`."""
    candidates: list[Any] = []
    images = reply.get("images")
    if isinstance(images, list):
        candidates += images
    content = reply.get("content")
    if isinstance(content, list):
        candidates += [p for p in content if get(p, "type") == "image_url"]
    urls = []
    for item in candidates:
        link = get(item, "image_url")
        url = as_text(get(link, "url")) or as_text(link)  # some gateways send the bare string
        if url:
            urls.append(url.strip())
    return urls


def _decode_data_url(url: str, ctx: dict[str, Any]) -> bytes:
    head, comma, data = url.partition(",")
    if not comma or ";base64" not in head.lower():
        raise TransientError("the image data URL is not base64", possibly_billed=True, **ctx)
    try:
        return decode_base64("".join(data.split()))
    except (binascii.Error, ValueError):
        raise TransientError("image data is not valid base64", possibly_billed=True,
                             **ctx) from None


def _raise_for_error(
    code: int,
    headers: httpx.Headers,
    body: bytes,
    error: Any,
    ctx: dict[str, Any],
    redact: Redactor,
    key_env: str,
) -> NoReturn:
    err = as_dict(error)
    metadata = as_dict(err.get("metadata"))
    said = as_text(err.get("message")) or as_text(error) or ""
    reasons = [r for r in metadata.get("reasons") or [] if isinstance(r, str)]
    if reasons:
        said += f" (flagged for: {', '.join(reasons)})"
    upstream = as_text(metadata.get("provider_name"))
    raw = metadata.get("raw")
    if upstream or raw:
        detail = raw if isinstance(raw, str) else "" if raw is None else str(raw)
        said += f" [{upstream or 'upstream'}{': ' + detail if detail else ''}]"
    text = redact.message(said or describe_body(ctx["status"], body, redact))
    lowered = text.lower()
    waited = retry_after_from_headers(headers)
    status = ctx["status"]

    if 300 <= status < 400:
        where = headers.get("location", "elsewhere")
        raise FatalError(redact.message(f"unexpected redirect (HTTP {status}) to {where}; "
                                        "check base_url"), **ctx)
    if code == 401:
        raise FatalError(f"API key rejected (HTTP {code}): {text} Check {key_env}.", **ctx)
    if code == 402 or (code == 403 and "key limit exceeded" in lowered):
        raise QuotaExhaustedError(redact.message(f"out of credits (HTTP {code}): {text}"),
                                  **ctx)
    if code == 403:
        raise BlockedError(text, **ctx)
    if code == 404 or (code == 400 and "not a valid model" in lowered):
        raise UnknownModelError(f"{text} (check the model id and base_url)", **ctx)
    if code in (408, 409, 429) or code >= 500:
        billed = 200 <= status < 300  # it failed after generation had started
        raise TransientError(text, overload=code in (429, 502, 503), retry_after=waited,
                             possibly_billed=billed, **ctx)
    raise InvalidRequestError(text, **ctx)
