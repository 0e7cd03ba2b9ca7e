"""The OpenRouter side of the simulator, under /api/v1 (a provider `base_url` of
`http://HOST:PORT/api/v1`, as for https://openrouter.ai/api/v1):

    POST /api/v1/chat/completions                        image generation
    GET  /api/v1/key                                     the key's limits (pre-flight)
    GET  /api/v1/models/{vendor}/{model}/endpoints       one model (pre-flight)

The shared flow (outage, daily quota, "[blocked]", random faults) is SimulatorCore.generation
in core.py; this module checks and answers requests in OpenRouter's shapes, errors being
{"error": {"code", "message", "metadata"?}} with the HTTP status equal to the code:

- auth: `Authorization: Bearer KEY`; none → 401 "No auth credentials found"; another key
  than `api_key` → 401 "User not found.".
- front door: JSON object with `model` (an OpenRouter model of the catalog, else 400 "... is
  not a valid model ID"), `messages` (text and `image_url` data-URL parts), `modalities`,
  `image_config` (ratio and size checked against the catalog) → 400; "[invalid]" → 400.
  A request whose modalities leave out "image" gets a text answer.
- faults: overloaded → 503 "no provider available"; rate_limited → 429 with `Retry-After`
  of `retry_delay`; internal → an `error` object inside a 200 (a failure after generation
  started); timeout → hangs, then 408; blocked and "[blocked]" → 403 with moderation
  `metadata.reasons`; no_image → a 200 with text only; daily quota → 402 credits.
- success: a chat.completion whose `message.images[0].image_url.url` is a PNG data URL,
  with `usage` token counts and `cost` (the catalog price, in US dollars).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbbatch import catalog
from nbbatch.catalog import MODELS, ModelInfo
from nbbatch.images import PNG, NotAnImageError, detect_image
from nbbatch.sim.core import (
    INVALID_WORD,
    Decision,
    Reject,
    SimResponse,
    SimulatorCore,
    json_response,
)
from nbbatch.sim.images import draw_image
from nbbatch.sim.options import SimulatorOptions

PROVIDER = "openrouter"
PREFIX = "/api/v1"
_TOP_FIELDS = {"model", "messages", "modalities", "image_config", "usage", "stream", "user",
               "provider", "max_tokens", "temperature", "seed"}
_IMAGE_TOKENS = 1290  # completion tokens of one image; illustrative


def route(
    core: SimulatorCore,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> SimResponse | None:
    """Answer an OpenRouter route (under /api/v1/), or None (header names lower-case)."""
    if not path.startswith(PREFIX + "/"):
        return None
    sub = path.removeprefix(PREFIX)
    if method == "GET" and sub == "/key":
        return _key_info(core, headers)
    if method == "GET" and sub.startswith("/models/") and sub.endswith("/endpoints"):
        return _model_info(sub.removeprefix("/models/").removesuffix("/endpoints"))
    if sub != "/chat/completions" or method != "POST":
        return error(404, f"No route for {method} {path}")

    def admit(opts: SimulatorOptions, entry: dict[str, Any]) -> _Request:
        _check_key(opts, headers)
        doc = _parse_json(body)
        model = doc.get("model")
        entry["model"] = model if isinstance(model, str) else None
        info = MODELS.get(model) if isinstance(model, str) else None
        if info is None or info.family != PROVIDER:
            raise _invalid(f"{model} is not a valid model ID")
        return _validate(doc, info, entry)

    return core.generation(PROVIDER, None, admit, _render)


def error(code: int, message: str, **metadata: Any) -> SimResponse:
    doc: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        doc["metadata"] = metadata
    return json_response(code, {"error": doc})


def _invalid(message: str) -> Reject:
    return Reject(error(400, message), "invalid")


def _check_key(opts: SimulatorOptions, headers: Mapping[str, str]) -> None:
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise Reject(error(401, "No auth credentials found"), "auth")
    if opts.api_key is not None and key != opts.api_key:
        raise Reject(error(401, "User not found."), "auth")


def _key_info(core: SimulatorCore, headers: Mapping[str, str]) -> SimResponse:
    try:
        _check_key(core.options, headers)
    except Reject as r:
        return r.response
    opts, remaining = core.options, None
    if opts.daily_quota is not None and opts.quota_target in ("all", PROVIDER):
        used = core.stats()["quota_used_by_provider"].get(PROVIDER, 0)
        remaining = float(max(0, opts.daily_quota - used))
    return json_response(200, {"data": {
        "label": "sk-or-v1-sim...key", "limit": None if remaining is None else opts.daily_quota,
        "limit_remaining": remaining, "usage": 0.0, "is_free_tier": False}})


def _model_info(model: str) -> SimResponse:
    info = MODELS.get(model)
    if info is None or info.family != PROVIDER:
        return error(404, f"Model {model} not found")
    modalities = {"input_modalities": ["image", "text"], "output_modalities": ["image", "text"]}
    return json_response(200, {"data": {
        "id": model, "name": model, "architecture": modalities,
        "endpoints": [{"name": f"Simulated | {model}", "provider_name": "Simulator",
                       "status": 0}]}})


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON in request body") from None
    if not isinstance(doc, dict):
        raise _invalid("Request body must be a JSON object")
    return doc


@dataclass
class _Request:
    model: str
    prompt: str
    aspect_ratio: str | None
    image_size: str | None
    references: int
    image: bool  # "image" among the modalities asked for

    @property
    def wants_image(self) -> bool:
        return self.image


def _validate(doc: dict[str, Any], info: ModelInfo, entry: dict[str, Any]) -> _Request:
    for name in doc:
        if name not in _TOP_FIELDS:
            raise _invalid(f"Unrecognized request field: {name}")
    if doc.get("stream") is True:
        raise _invalid("Streaming is not supported by the simulator")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise _invalid("messages: must be a non-empty list of messages")
    prompt, references = _content(messages[-1].get("content"))
    entry.update(prompt=prompt, references=references)
    if not prompt.strip():
        raise _invalid("messages: the last message has no text")
    modalities = doc.get("modalities", ["text"])
    if not isinstance(modalities, list) or not set(modalities) <= {"image", "text"}:
        raise _invalid("modalities: must be a list of 'image' and 'text'")
    config = doc.get("image_config") or {}
    if not isinstance(config, dict) or not set(config) <= {"aspect_ratio", "image_size"}:
        raise _invalid("image_config: only aspect_ratio and image_size are supported")
    ratio, size = config.get("aspect_ratio"), config.get("image_size")
    if ratio is not None and ratio not in info.aspect_ratios:
        raise _invalid(f"image_config.aspect_ratio: {ratio!r} is not supported by {info.id}")
    if size is not None and size not in info.image_sizes:
        raise _invalid(f"image_config.image_size: {size!r} is not supported by {info.id}")
    if INVALID_WORD in prompt:
        raise _invalid("Invalid prompt")
    return _Request(info.id, prompt, ratio, size, references, "image" in modalities)


def _content(content: Any) -> tuple[str, int]:
    """The text of a message and how many reference images it carries (each checked)."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise _invalid("messages: content must be text or a list of parts")
    texts, references = [], 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            data = str(url).partition(",")[2]
            try:
                detect_image(base64.b64decode(data, validate=True))
            except (binascii.Error, ValueError, NotAnImageError):
                raise _invalid("image_url: must be a base64 data URL of a PNG, JPEG or WEBP "
                               "image") from None
            references += 1
        else:
            raise _invalid(f"messages: unsupported content part {kind!r}")
    return " ".join(texts), references


def _render(d: Decision, opts: SimulatorOptions, req: _Request) -> tuple[SimResponse, str]:
    outcome = "blocked" if d.outcome == "blocked_prompt" else d.outcome
    gen_id = f"gen-{int(time.time())}-{d.token.hex()[:20]}"
    if d.outcome == "success":
        response = _completion(gen_id, req, opts, with_image=req.wants_image)
    elif d.outcome == "no_image":
        response = _completion(gen_id, req, opts, with_image=False)
    elif d.outcome == "overloaded":
        response = error(503, "No allowed providers are available for the selected model.")
    elif d.outcome == "rate_limited":
        response = error(429, f"{req.model} is temporarily rate-limited upstream. Please "
                         "retry shortly.", provider_name="Google", raw="429 RESOURCE_EXHAUSTED")
        response.headers["Retry-After"] = str(math.ceil(opts.retry_delay))
    elif d.outcome == "quota":
        response = error(402, "Insufficient credits. Add more using "
                         "https://openrouter.ai/settings/credits")
    elif d.outcome == "internal":
        response = json_response(200, {
            "id": gen_id, "object": "chat.completion", "model": req.model, "choices": [],
            "error": {"code": 502, "message": "Provider returned error",
                      "metadata": {"provider_name": "Google", "raw": "upstream reset"}}})
    elif d.outcome == "timeout":
        response = error(408, "Request timed out")
    else:  # blocked, blocked_prompt
        stage = "input" if d.outcome == "blocked_prompt" else "output"
        response = error(403, f"{req.model} requires moderation. Your {stage} was flagged for "
                         '"violence".', reasons=["violence"], flagged_input=req.prompt[:100],
                         provider_name="Google", model_slug=req.model)
    response.delay = d.delay
    return response, outcome


def _completion(
    gen_id: str, req: _Request, opts: SimulatorOptions, *, with_image: bool
) -> SimResponse:
    reply: dict[str, Any] = {"role": "assistant"}
    prompt_tokens = max(1, len(req.prompt) // 4) + 258 * req.references
    completion_tokens = 12
    if with_image:
        png = draw_image(req.prompt, aspect_ratio=req.aspect_ratio, mime_type=PNG.mime_type,
                         scale=opts.scale)
        reply["content"] = "Here is your image."
        reply["images"] = [{"type": "image_url", "image_url": {
            "url": f"data:{PNG.mime_type};base64," + base64.b64encode(png).decode()}}]
        completion_tokens += _IMAGE_TOKENS
    else:
        reply["content"] = f"I can describe it instead: {req.prompt}"
    cost = catalog.price(req.model, image_size=req.image_size) if with_image else 0.0001
    return json_response(200, {
        "id": gen_id, "object": "chat.completion", "created": int(time.time()),
        "model": req.model, "provider": "Google",
        "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "STOP",
                     "message": reply}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens, "cost": round(cost, 6)},
    })
