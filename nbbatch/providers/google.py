"""Google's generateContent wire format: the request body, and every response classified.

Shared by the Gemini API and Vertex AI providers, which speak the same JSON. An answer is an
image, or transient, blocked, invalid, quota exhausted or fatal (see errors.py). Responses are
lowerCamelCase; snake_case is accepted too. Any JSON shape at all must end in a
GeneratedImage or a ProviderError, never in a KeyError.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import httpx

from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    OptionError,
    ProviderError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.images import NotAnImageError, detect_image
from nbbatch.providers.answer_json import unparsed
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest
from nbbatch.providers.wire import (
    as_dict,
    as_text,
    decode_base64,
    describe_body,
    get,
    parse_json,
    retry_after_from_headers,
    server_delay,
)
from nbbatch.redaction import Redactor
from nbbatch.text import shown

# finishReasons that mean "refused on policy grounds": the image fails and is not retried.
BLOCKING_FINISH_REASONS = frozenset({
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "SAFETY", "PROHIBITED_CONTENT",
    "RECITATION", "IMAGE_RECITATION", "BLOCKLIST", "SPII",
})  # fmt: skip

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")  # protobuf Duration as JSON, e.g. "58s", "34.4s"
_LIMIT_ZERO = re.compile(r"\blimit: 0(?![\d.])")  # the tier has no quota at all for this model
_URLSAFE = str.maketrans("-_", "+/")


MODALITIES = ("TEXT", "IMAGE")  # what the image models answer with unless told otherwise


def check_modalities(options: Mapping[str, Any]) -> dict[str, Any]:
    """`response_modalities`: a list of TEXT and IMAGE that includes IMAGE."""
    out = dict(options)
    value = out.get("response_modalities")
    if value is not None:
        if (not isinstance(value, list) or not value
                or any(m not in MODALITIES for m in value) or "IMAGE" not in value):
            raise OptionError("response_modalities", 'must be a list of "TEXT" and "IMAGE" that '
                              f"includes IMAGE, e.g. [IMAGE], got {shown(value)}")
        out["response_modalities"] = [str(m) for m in value]
    return out


def build_body(request: ImageRequest,
               modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """The generateContent request for one image: prompt, reference images, image options."""
    parts: list[dict[str, Any]] = [{"text": request.prompt}]
    for ref in request.references:
        data = base64.b64encode(ref.data).decode("ascii")
        parts.append({"inlineData": {"mimeType": ref.mime_type, "data": data}})
    config: dict[str, Any] = {"responseModalities": list(modalities)}
    image_config = {"aspectRatio": request.aspect_ratio, "imageSize": request.image_size}
    image_config = {key: value for key, value in image_config.items() if value is not None}
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    redact: Redactor,
    model: str = "",
    key_env: str | None = None,
    hints: Mapping[int, str] | None = None,
) -> GeneratedImage:
    """Turn one HTTP response into the image it carries, or raise the ProviderError it means.

    `model` is reported when the response names none; `key_env` names the key's variable in
    the message for a rejected key; `hints` maps an HTTP status to a sentence appended to the
    message of an error with that status (what to check, in the provider's own terms).
    """
    return classify_document(status, headers, _parse(body), body, provider=provider,
                             redact=redact, model=model, key_env=key_env, hints=hints)


def classify_document(
    status: int,
    headers: Mapping[str, str],
    doc: dict[str, Any] | None,
    body: bytes = b"",
    *,
    provider: str,
    redact: Redactor,
    model: str = "",
    key_env: str | None = None,
    hints: Mapping[int, str] | None = None,
) -> GeneratedImage:
    """`classify` for an answer already parsed: `doc` is its JSON object (None when it was
    not one; `body` is then quoted). Batch results arrive as documents inside a file."""
    headers = httpx.Headers(headers)
    request_id = as_text(get(doc, "responseId", "response_id")) or headers.get("x-request-id")
    usage = redact.scrub(as_dict(get(doc, "usageMetadata", "usage_metadata"))) or None
    request_id = redact(request_id) if request_id else None
    ctx: dict[str, Any] = {
        "provider": provider, "status": status, "request_id": request_id, "usage": usage
    }
    error = get(doc, "error")
    if 200 <= status < 300 and error is None:
        if doc is None:
            # A cut-off JSON answer was probably generated, so possibly billed; a portal's page not.
            cut_json = body.lstrip()[:1] in (b"{", b"[")
            message = unparsed(body) if cut_json else describe_body(status, body, redact)
            raise TransientError(redact.message(message), possibly_billed=cut_json, **ctx)
        return _read_content(doc, ctx, model, redact)
    code = status
    if 200 <= status < 300:  # some gateways wrap an error in a 200
        wrapped = error.get("code") if isinstance(error, dict) else None
        code = wrapped if isinstance(wrapped, int) and 400 <= wrapped < 600 else 500
    _raise_for_error(code, headers, body, doc, ctx, redact, key_env, (hints or {}).get(code))


def check_answer(status: int, headers: Mapping[str, str], body: bytes, *, provider: str,
                 redact: Redactor, model: str, key_env: str | None = None,
                 hints: Mapping[int, str] | None = None) -> None:
    """Read the answer to `GET .../models/{model}`: return when the model exists and the key
    is accepted, raise what the answer means otherwise (see Provider.check)."""
    doc = _parse(body)
    if 200 <= status < 300:
        if doc is not None and isinstance(doc.get("name"), str):
            return
        raise CheckUnavailable(f"HTTP {status} without a model description")
    error = as_dict(get(doc, "error"))
    if status == 404:
        text = as_text(error.get("message")) or ""
        if error.get("status") == "NOT_FOUND" and "models/" in text:
            raise UnknownModelError(redact.message(f"model {model!r} is not known: {text}"),
                                    provider=provider, status=status)
        raise CheckUnavailable("the metadata route answered 404")
    ctx: dict[str, Any] = {"provider": provider, "status": status, "request_id": None,
                           "usage": None}
    try:
        _raise_for_error(status, httpx.Headers(headers), body, doc, ctx, redact, key_env,
                         (hints or {}).get(status))
    except (FatalError, QuotaExhaustedError):
        raise
    except ProviderError as exc:  # busy, a gateway's page, anything that says nothing
        raise CheckUnavailable(exc.message) from None


def _read_content(
    doc: dict[str, Any], ctx: dict[str, Any], model: str, redact: Redactor
) -> GeneratedImage:
    feedback = as_dict(get(doc, "promptFeedback", "prompt_feedback"))
    block = get(feedback, "blockReason", "block_reason")
    if block:
        why = as_text(get(feedback, "blockReasonMessage", "block_reason_message"))
        raise BlockedError(redact.message(f"prompt blocked ({block})" + _suffix(why)), **ctx)

    candidates = get(doc, "candidates")
    candidate = as_dict(candidates[0]) if isinstance(candidates, list) and candidates else {}
    finish = as_text(get(candidate, "finishReason", "finish_reason"))
    finish_message = as_text(get(candidate, "finishMessage", "finish_message"))
    if finish in BLOCKING_FINISH_REASONS:
        message = redact.message(f"image blocked ({finish})" + _suffix(finish_message))
        raise BlockedError(message, **ctx)

    parts = get(as_dict(get(candidate, "content")), "parts")
    parts = [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []
    # Thought parts are interim drafts; the answer is what is not marked as thought.
    visible = [p for p in parts if p.get("thought") is not True]
    text = "".join(p["text"] for p in visible if isinstance(p.get("text"), str)).strip()
    images = [image for p in visible if (image := _image_part(p))]
    if not images:
        reason = finish or ("no candidates" if not candidate else "no finishReason")
        detail = finish_message or (f"the model answered {text!r}" if text else None)
        message = redact.message(f"no image in the response ({reason})" + _suffix(detail))
        raise TransientError(message, **ctx)

    encoded, declared = images[-1]  # several images (steps of a story, say): the last is final
    try:
        data = _b64decode(encoded)
        info = detect_image(data)
    except NotAnImageError as exc:
        label = f" (declared {declared})" if declared else ""
        message = redact.message(f"received bytes are not an image{label}: {exc}")
        raise TransientError(message, possibly_billed=True, **ctx) from None
    except ValueError:  # binascii.Error, or non-ASCII text
        message = "image data is not valid base64"
        raise TransientError(message, possibly_billed=True, **ctx) from None
    return GeneratedImage(
        data=data,
        mime_type=info.mime_type,  # named after the bytes, whatever was declared
        # What the server says is stored and shown: an echoed key must not come along.
        model=redact(as_text(get(doc, "modelVersion", "model_version")) or model),
        usage=ctx["usage"] or {},
        request_id=ctx["request_id"],
        text=redact(text) or None,
        pixels=(info.width, info.height),
    )


def _raise_for_error(
    code: int,
    headers: httpx.Headers,
    body: bytes,
    doc: dict[str, Any] | None,
    ctx: dict[str, Any],
    redact: Redactor,
    key_env: str | None,
    hint: str | None = None,
) -> NoReturn:
    error = get(doc, "error")
    details = get(as_dict(error), "details")
    details = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    provider_message = as_text(get(as_dict(error), "message")) or as_text(error)
    fallback = describe_body(code, body if doc is None else b"", redact)
    message = redact.message(provider_message or fallback)
    if hint:
        message = redact.message(f"{message} {hint}")
    waited = retry_after_from_headers(headers)

    if 300 <= code < 400:
        where = headers.get("location", "elsewhere")
        message = redact.message(f"unexpected redirect (HTTP {code}) to {where}; check base_url")
        raise FatalError(message, **ctx)
    if code == 400:
        if any(str(d.get("reason", "")).startswith("API_KEY_") for d in details):
            variable = key_env or "the API key variable"
            raise FatalError(f"{message} Check {variable}.", **ctx)
        if get(as_dict(error), "status") == "FAILED_PRECONDITION":
            # The caller is refused, not the request (the API is not offered where the
            # request comes from): every image would fail the same way.
            raise FatalError(redact.message(
                f"{message} (the service refuses requests from where this runs: use Vertex AI "
                "or another provider, or run from a region the Gemini API serves)"), **ctx)
        raise InvalidRequestError(message, **ctx)
    if code in (401, 403):
        raise FatalError(message, **ctx)
    if code == 404:
        default_hint = "" if provider_message or hint else " (check the model name and base_url)"
        raise UnknownModelError(message + default_hint, **ctx)
    if code == 429:
        exhausted = _exhausted_quota(details, provider_message or "")
        if exhausted:
            message = redact.message(f"quota exhausted ({exhausted}): {message}")
            raise QuotaExhaustedError(message, **ctx)
        delay = _retry_delay(details)
        raise TransientError(
            message, overload=True, retry_after=waited if delay is None else delay, **ctx
        )
    if code == 503:
        raise TransientError(message, overload=True, retry_after=waited, **ctx)
    if code >= 500 or code in (408, 499) or code < 300:  # 499: cancelled under load
        raise TransientError(message, retry_after=waited, **ctx)
    raise InvalidRequestError(message, **ctx)


def _exhausted_quota(details: list[dict[str, Any]], message: str) -> str | None:
    """Why a 429 will not clear today: a per-day quota, or a limit of 0. None for per-minute."""
    for detail in details:
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else []:
            quota_id = as_text(get(as_dict(violation), "quotaId", "quota_id")) or ""
            metric = as_text(get(as_dict(violation), "quotaMetric", "quota_metric")) or ""
            if "PerDay" in quota_id or "per_day" in metric:
                return quota_id or metric
    return "limit: 0" if _LIMIT_ZERO.search(message) else None


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for detail in details:
        match = _DURATION.match(as_text(get(detail, "retryDelay", "retry_delay")) or "")
        if match:
            return server_delay(float(match.group(1)))
    return None


def _image_part(part: dict[str, Any]) -> tuple[str, str | None] | None:
    inline = as_dict(get(part, "inlineData", "inline_data"))
    data = inline.get("data")
    mime = as_text(get(inline, "mimeType", "mime_type"))
    if not isinstance(data, str) or (mime is not None and not mime.startswith("image/")):
        return None
    return data, mime


def _b64decode(text: str) -> bytes:
    # Protobuf JSON allows URL-safe and unpadded base64 as well as the standard form.
    if "-" in text or "_" in text:
        text = text.translate(_URLSAFE)
    return decode_base64(text + "=" * (-len(text) % 4))


def _parse(body: bytes) -> dict[str, Any] | None:
    doc = parse_json(body)
    if isinstance(doc, list):  # streaming endpoints wrap answers in a list
        return doc[0] if len(doc) == 1 and isinstance(doc[0], dict) else None
    return doc if isinstance(doc, dict) else None


def _suffix(detail: str | None) -> str:
    return f": {detail}" if detail else ""
