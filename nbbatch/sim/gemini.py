"""The Gemini side of the simulator: `generateContent` requests checked and answered.

Wire shapes are the Gemini API's own (errors with google.rpc details, thought parts, usage
metadata). The shared flow (key, model, body, then the outage window, daily quota,
"[blocked]" word and random faults) is SimulatorCore.generation in core.py; this module
parses, validates and renders.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbbatch.catalog import MODELS, ModelInfo
from nbbatch.sim.core import (
    INVALID_WORD,
    Decision,
    Reject,
    SimResponse,
    SimulatorCore,
    json_response,
)
from nbbatch.sim.images import draw_image, padded
from nbbatch.sim.options import SimulatorOptions, retired

PROVIDER = "gemini"
_PREFIXES = ("/v1beta/models/", "/v1/models/")  # the google-genai SDK now defaults to v1
_SUFFIX = ":generateContent"


def route(
    core: SimulatorCore,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> SimResponse | None:
    """Answer a Gemini route, or None when `path` is not one (headers: lower-case names)."""
    prefix = next((p for p in _PREFIXES if path.startswith(p)), None)
    if prefix is None:
        return None
    version = prefix.split("/")[1]
    key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
    if method == "GET" and _SUFFIX not in path:
        if prefix == "/v1/models/" and not key and "authorization" in headers:
            return None  # OpenAI's GET /v1/models/{model}: same path, its own key header
        return _describe_model(core, path[len(prefix):], key, version)
    if not path.endswith(_SUFFIX) or method != "POST":
        return None
    model = path[len(prefix) : -len(_SUFFIX)]

    def admit(opts: SimulatorOptions, entry: dict[str, Any]) -> Parsed:
        check_key(opts, key)
        info = _known(model, version, "generateContent", opts)
        parsed = _parse_body(body)
        entry.update(prompt=parsed.prompt, references=parsed.references)
        validate(parsed, info)
        parsed.info = info
        return parsed

    return core.generation(PROVIDER, model, admit, render)


def _known(model: str, version: str, method: str, opts: SimulatorOptions) -> ModelInfo:
    info = MODELS.get(model)
    if info is None or info.family != "gemini" or retired(info, opts):
        raise Reject(error(404, "NOT_FOUND", (
            f"models/{model} is not found for API version {version}, or is not supported for "
            f"{method}. Call ListModels to see the list of available models and their "
            "supported methods.")), "not_found")
    return info


def _describe_model(core: SimulatorCore, model: str, key: str, version: str) -> SimResponse:
    """GET models/{model}: the model's description, as ListModels gives it."""

    def answer(opts: SimulatorOptions) -> SimResponse:
        check_key(opts, key)
        info = _known(model, version, "get", opts)
        return json_response(200, {
            "name": f"models/{info.id}", "version": "001", "displayName": info.id,
            "description": "An image model (simulated).", "inputTokenLimit": 65536,
            "outputTokenLimit": 32768,
            "supportedGenerationMethods": ["generateContent", "countTokens",
                                           "batchGenerateContent"]})

    return core.metadata(PROVIDER, model, answer)


def error(code: int, status: str, message: str, details: list | None = None) -> SimResponse:
    doc: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        doc["details"] = details
    return json_response(code, {"error": doc})


def _invalid(message: str) -> Reject:
    return Reject(error(400, "INVALID_ARGUMENT", message), "invalid")


@dataclass
class Parsed:
    prompt: str
    references: int
    aspect_ratio: str | None
    image_size: str | None
    modalities: tuple[str, ...]
    info: ModelInfo | None = None

    @property
    def wants_image(self) -> bool:
        return "IMAGE" in self.modalities


def check_key(opts: SimulatorOptions, key: str) -> None:
    if not key:
        raise Reject(error(403, "PERMISSION_DENIED", (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.")),
            "auth")
    if opts.api_key is not None and key != opts.api_key:
        message = "API key not valid. Please pass a valid API key."
        raise Reject(error(400, "INVALID_ARGUMENT", message, [
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


def _parse_body(body: bytes) -> Parsed:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON payload received. Unexpected token.") from None
    return parse_request(doc)


def parse_request(doc: Any) -> Parsed:
    """A GenerateContentRequest, checked as the API does (Reject with its 400 otherwise)."""
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
                    _b64decode(data)
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
    return Parsed("\n".join(texts), references, ratio, size, modalities)


def validate(p: Parsed, info: ModelInfo) -> None:
    """What the model itself refuses (the real wording of these messages is not published)."""
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
    return error(429, "RESOURCE_EXHAUSTED",
                  _QUOTA_MESSAGE.format(metric=metric, limit=limit, model=model, delay=delay), [
        _HELP,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ])


def _image_tokens(model: str, size: str | None) -> int:
    """Output image tokens as Gemini reports them (3.1-flash sizes other than 1K are scaled
    from their prices)."""
    if model.startswith("gemini-2.5"):
        return 1290
    if "flash" in model:
        return {"512": 747, "2K": 1680, "4K": 2520}.get(size or "1K", 1120)
    return 2000 if size == "4K" else 1120


def render(d: Decision, opts: SimulatorOptions, p: Parsed) -> tuple[SimResponse, str]:
    """The response for a decided outcome, and the outcome to log."""
    assert p.info is not None
    model, decision, delay = p.info.id, d.outcome, d.delay
    rid = base64.urlsafe_b64encode(d.token).decode().rstrip("=")
    if decision in ("overloaded", "rate_limited", "quota", "internal", "timeout"):
        if decision == "overloaded":
            failure = error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        elif decision == "rate_limited":
            failure = _quota_error(model, per_day=False, limit=20, retry_delay=opts.retry_delay)
        elif decision == "quota":
            limit = opts.daily_quota or 0
            failure = _quota_error(model, per_day=True, limit=limit, retry_delay=opts.retry_delay)
        elif decision == "internal":
            failure = error(500, "INTERNAL", "An internal error has occurred. Please retry or "
                            "report in https://developers.generativeai.google/guide/troubleshooting")
        else:
            failure = error(504, "DEADLINE_EXCEEDED",
                            "Deadline expired before operation could complete.")
        failure.delay = delay
        return failure, decision

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
        parts = _image_parts(model, p, opts.scale, opts.image_bytes, d.variant)
        doc["candidates"] = [{"content": {"parts": parts, "role": "model"},
                              "finishReason": "STOP", "index": 0}]
        usage["candidatesTokenCount"] = image_tokens
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": image_tokens}]
    if thinks and "candidates" in doc:
        usage["thoughtsTokenCount"] = 200 + len(p.prompt) % 500
    usage["totalTokenCount"] = sum(
        usage.get(k, 0) for k in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount")
    )
    usage["serviceTier"] = "standard"
    doc.update(usageMetadata=usage, modelVersion=model, responseId=rid)
    return json_response(200, doc, delay), outcome


def _image_parts(model: str, p: Parsed, scale: int, size: int | None,
                 repeat: int = 0) -> list[dict[str, Any]]:
    def inline(variant: int, mime: str) -> dict[str, str]:
        # Each repeat of a prompt gets its own pair: final image and interim thought image.
        image = draw_image(p.prompt, aspect_ratio=p.aspect_ratio, mime_type=mime,
                           scale=scale, variant=2 * repeat + variant)
        if variant == 0:
            image = padded(image, size)
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


def _b64decode(data: object) -> bytes:
    """Bytes fields take standard or URL-safe base64, padded or not, as protobuf JSON does."""
    if not isinstance(data, str):
        raise ValueError("not a string")
    text = data.translate(str.maketrans("-_", "+/"))
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
