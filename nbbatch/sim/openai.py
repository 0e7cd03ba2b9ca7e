"""The OpenAI side of the simulator: POST /v1/images/generations and /v1/images/edits.

Bodies are OpenAI's own, as its API and SDK document them. The shared flow (outage, daily
quota, "[blocked]", random faults) is SimulatorCore.generation in core.py; the request checks
are in openai_requests.py; this module answers:

- auth: `Authorization: Bearer KEY`; none → 401; with `api_key` set, another key → 401
  `invalid_api_key` echoing a masked key, as OpenAI does.
- front door: JSON (generations) or multipart (edits) parsed, model known to the catalog as
  an OpenAI model (else 404 `model_not_found`), fields checked per model family (unknown
  parameter, bad size/quality/format, prompt length, n, images) → 400 `invalid_request_error`.
- faults: overloaded → 503 `server_is_overloaded`; rate_limited → 429 `rate_limit_exceeded`
  with `retry-after` (whole seconds, rounded up) and `retry-after-ms` (exact) from
  `retry_delay`; internal → 500 `server_error`; timeout → hangs, then Cloudflare's 504 HTML
  page; blocked and "[blocked]" → 400 `moderation_blocked` (dall-e: `content_policy_violation`);
  no_image → 500 `server_error` in its newer wording (the API has no "answered without an
  image" success; this is the closest real failure); daily quota → 429 `insufficient_quota`.
- success: an ImagesResponse with the image drawn by images.py in the asked output_format;
  dall-e answers a URL served from GET /_sim/files/NAME unless `response_format: b64_json`.
  Pixel sizes are the Gemini-like sizes of images.py for the ratio of `size` (scaled down),
  not OpenAI's exact pixels; `background: transparent` draws no alpha. The `x-ratelimit-*`
  headers are fixed sample values, not counted.
"""

from __future__ import annotations

import base64
import io
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

from PIL import Image

from nbbatch.catalog import MODELS
from nbbatch.images import format_named
from nbbatch.sim.core import (
    Decision,
    Reject,
    SimResponse,
    SimulatorCore,
    json_response,
)
from nbbatch.sim.images import draw_image, padded
from nbbatch.sim.openai_requests import (
    GPT,
    ImagesRequest,
    UploadedFile,
    error,
    model_family,
    parse_form,
    parse_json,
    validate,
)
from nbbatch.sim.options import SimulatorOptions, retired

PROVIDER = "openai"
_ROUTES = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}
# Output image tokens by quality and size, as OpenAI bills them.
_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
_IMAGE_INPUT_TOKENS = 258  # per reference image; illustrative

_KEYS_URL = "https://platform.openai.com/account/api-keys"
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    f"a username and password. You can obtain an API key from {_KEYS_URL}."
)
_RATE_LIMIT = (
    "Rate limit exceeded for images per minute in organization org-simulator. Limit: 5/1min. "
    "Current: 6/1min. Please visit https://platform.openai.com/docs/guides/rate-limits to "
    "learn how to increase your rate limit."
)
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_SERVER_ERROR = (
    "The server had an error processing your request. Sorry about that! You can retry your "
    "request, or contact us through our help center at help.openai.com if you keep seeing "
    "this error. (Please include the request ID {rid} in your email.)"
)
_NO_IMAGE = (
    "An error occurred while processing your request. You can retry your request, or contact "
    "us through our help center at help.openai.com if the error persists. Please include the "
    "request ID {rid} in your message."
)
_MODERATION = (
    "Your request was rejected by the safety system. If you believe this is an error, contact "
    "us at help.openai.com and include the request ID {uuid}. safety_violations=[{category}]."
)
_CONTENT_POLICY = {
    "input": "Your request was rejected as a result of our safety system. Your prompt may "
             "contain text that is not allowed by our safety system.",
    "output": "Your request was rejected as a result of our safety system. Image descriptions "
              "generated from your prompt may contain text that is not allowed by our safety "
              "system. If you believe this was done in error, your request may succeed if "
              "retried, or by adjusting your prompt.",
}
_GATEWAY_TIMEOUT = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def route(
    core: SimulatorCore,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> SimResponse | None:
    """Answer an OpenAI images route (/v1/images/...) or GET /v1/models/{model}, or None when
    `path` is not one. Header names are lower-case. Other /v1/ paths are left free (Vertex AI
    uses /v1/ too)."""
    if path.startswith("/v1/models/") and method == "GET":
        return _describe_model(core, path.removeprefix("/v1/models/"),
                               headers.get("authorization", ""))
    if not path.startswith("/v1/images/"):
        return None
    endpoint = _ROUTES.get(path)
    if endpoint is None or method != "POST":
        response = error(404, f"Invalid URL ({method} {path})")
    else:
        host = headers.get("host") or "127.0.0.1"

        def admit(opts: SimulatorOptions, entry: dict[str, Any]) -> ImagesRequest:
            check_key(opts, headers.get("authorization", ""))
            images: list[UploadedFile] = []
            if endpoint == "generations":
                fields = parse_json(body)
            else:
                fields, images = parse_form(headers.get("content-type", ""), body)
            model = fields.get("model")
            model = model if isinstance(model, str) else _default_model(endpoint)
            entry["model"] = model
            info = MODELS.get(model)
            if info is None or info.family != PROVIDER or retired(info, opts):
                raise Reject(error(404, f"The model `{model}` does not exist or you do not "
                                        "have access to it.", code="model_not_found"),
                             "not_found")
            entry["references"] = len(images)
            if isinstance(fields.get("prompt"), str):
                entry["prompt"] = fields["prompt"]
            return validate(endpoint, model, fields, images)

        def answer(d: Decision, opts: SimulatorOptions,
                   req: ImagesRequest) -> tuple[SimResponse, str]:
            return render(core, host, d, opts, req)

        response = core.generation(PROVIDER, None, admit, answer)
    response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
    return response


def _default_model(endpoint: str) -> str:
    # Generations default to dall-e-2 "unless a parameter specific to the GPT image models is
    # used"; edits to gpt-image-1.5 (as the API documents). The first rule is simplified.
    return "dall-e-2" if endpoint == "generations" else "gpt-image-1.5"


def _describe_model(core: SimulatorCore, model: str, authorization: str) -> SimResponse:
    def answer(opts: SimulatorOptions) -> SimResponse:
        check_key(opts, authorization)
        info = MODELS.get(model)
        if info is None or info.family != PROVIDER or retired(info, opts):
            raise Reject(error(404, f"The model '{model}' does not exist", param="model",
                               code="model_not_found"), "not_found")
        return json_response(200, {"id": model, "object": "model", "created": 1_700_000_000,
                                   "owned_by": "system"})

    return core.metadata(PROVIDER, model, answer)


def check_key(opts: SimulatorOptions, authorization: str) -> None:
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise Reject(error(401, _NO_KEY), "auth")
    if opts.api_key is not None and key != opts.api_key:
        raise Reject(error(401, f"Incorrect API key provided: {_masked(key)}. You can find your "
                                f"API key at {_KEYS_URL}.", code="invalid_api_key"), "auth")


def _masked(key: str) -> str:
    """How OpenAI echoes a rejected key: its start and its last four characters."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]

# --- responses ------------------------------------------------------------------------


def render(
    core: SimulatorCore, host: str, d: Decision, opts: SimulatorOptions, req: ImagesRequest
) -> tuple[SimResponse, str]:
    rid = f"req_{d.token.hex()}"
    outcome = "blocked" if d.outcome == "blocked_prompt" else d.outcome
    if d.outcome == "success":
        response = _success(core, host, req, opts, d)
    elif d.outcome == "overloaded":
        response = error(503, "The server is overloaded or not ready yet.",
                         "service_unavailable_error", "server_is_overloaded")
    elif d.outcome == "rate_limited":
        response = error(429, _RATE_LIMIT, "requests", "rate_limit_exceeded")
        response.headers.update({
            "retry-after": str(math.ceil(opts.retry_delay)),
            "retry-after-ms": str(round(opts.retry_delay * 1000)),
        })
    elif d.outcome == "quota":
        response = error(429, _QUOTA, "insufficient_quota", "insufficient_quota")
    elif d.outcome == "internal":
        response = error(500, _SERVER_ERROR.format(rid=rid), "server_error")
    elif d.outcome == "no_image":
        response = error(500, _NO_IMAGE.format(rid=rid), "server_error", "server_error")
    elif d.outcome == "timeout":
        response = SimResponse(504, {"Content-Type": "text/html"}, _GATEWAY_TIMEOUT)
    else:  # blocked (output) or blocked_prompt (input)
        response = _blocked(req, "input" if d.outcome == "blocked_prompt" else "output", d)
    response.delay = d.delay
    limited = d.outcome == "rate_limited"
    response.headers.update({
        "x-request-id": rid,
        "openai-version": "2020-10-01",
        "openai-processing-ms": str(round(d.delay * 1000)),
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0" if limited else "4",
        "x-ratelimit-reset-requests": "12s",
    })
    return response, outcome


def _blocked(req: ImagesRequest, stage: str, d: Decision) -> SimResponse:
    if req.model.startswith("dall-e"):
        return error(400, _CONTENT_POLICY[stage], code="content_policy_violation")
    category = "violence" if stage == "input" else "sexual"
    message = _MODERATION.format(uuid=uuid.UUID(bytes=d.token), category=category)
    return error(400, message, "image_generation_user_error", "moderation_blocked",
                 moderation_details={"moderation_stage": stage, "categories": [category]})


def _success(
    core: SimulatorCore, host: str, req: ImagesRequest, opts: SimulatorOptions, d: Decision
) -> SimResponse:
    gpt = model_family(req.model) == GPT
    size = "1024x1024" if req.size == "auto" else req.size
    output_format = req.output_format if gpt else "png"
    image = padded(_draw(req.prompt, size, output_format, opts.scale, d.variant),
                   opts.image_bytes)
    item: dict[str, Any] = {}
    if req.response_format == "url":
        name = f"img-{d.token.hex()}.{output_format}"
        core.store_file(name, format_named(output_format).mime_type, image)
        item["url"] = f"http://{host}/_sim/files/{name}"
    else:
        item["b64_json"] = base64.b64encode(image).decode()
    if req.model == "dall-e-3":
        item["revised_prompt"] = f"A detailed, vivid image of: {req.prompt}"
    doc: dict[str, Any] = {"created": int(time.time()), "data": [item]}
    if gpt:
        quality = "medium" if req.quality in ("auto", "standard") else req.quality
        text_tokens = max(1, len(req.prompt) // 4)
        image_tokens = _IMAGE_INPUT_TOKENS * req.references
        output = _OUTPUT_TOKENS[quality].get(size, _OUTPUT_TOKENS[quality]["1024x1024"])
        doc.update(
            background="opaque" if req.background == "auto" else req.background,
            output_format=output_format, quality=quality, size=size,
            usage={
                "input_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"text_tokens": text_tokens,
                                         "image_tokens": image_tokens},
                "output_tokens": output,
                "output_tokens_details": {"image_tokens": output, "text_tokens": 0},
                "total_tokens": text_tokens + image_tokens + output,
            },
        )
    return json_response(200, doc)


def _draw(prompt: str, size: str, output_format: str, scale: int, variant: int) -> bytes:
    width, height = (int(x) for x in size.split("x"))
    g = math.gcd(width, height)
    ratio = f"{width // g}:{height // g}"
    if output_format == "jpeg":
        return draw_image(prompt, aspect_ratio=ratio, mime_type="image/jpeg", scale=scale,
                          variant=variant)
    png = draw_image(prompt, aspect_ratio=ratio, mime_type="image/png", scale=scale,
                     variant=variant)
    if output_format == "png":
        return png
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as drawn:
        drawn.save(out, "WEBP", quality=80)
    return out.getvalue()
