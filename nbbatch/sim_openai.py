"""The OpenAI side of the simulator: POST /v1/images/generations and /v1/images/edits.

Wire shapes follow shared/reference/openai-and-other-apis.md §1, §2 and §8; bodies quoted
there are used verbatim. The shared flow (outage, daily quota, "[blocked]", random faults) is
SimulatorCore.generation in simulate.py; this module checks and answers requests:

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
- success: an ImagesResponse with the image drawn by sim_images in the asked output_format;
  dall-e answers a URL served from GET /_sim/files/NAME unless `response_format: b64_json`.
  Pixel sizes are the Gemini-like sizes of sim_images for the ratio of `size` (scaled down),
  not OpenAI's exact pixels; `background: transparent` draws no alpha. The `x-ratelimit-*`
  headers are fixed sample values, not counted.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from PIL import Image

from nbbatch.catalog import MODELS
from nbbatch.images import NotAnImageError, detect_image
from nbbatch.sim_images import draw_image
from nbbatch.simulate import (
    INVALID_WORD,
    Decision,
    Reject,
    SimResponse,
    SimulatorCore,
    SimulatorOptions,
    json_response,
)

PROVIDER = "openai"
_ROUTES = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}

_GPT = "gpt"  # model families, as far as request fields go
_COMMON = {"model", "prompt", "n", "size", "user"}
_GPT_FIELDS = _COMMON | {"quality", "output_format", "output_compression", "background",
                         "stream", "partial_images"}
_FIELDS = {
    ("generations", _GPT): _GPT_FIELDS | {"moderation"},
    ("generations", "dall-e-3"): _COMMON | {"quality", "style", "response_format"},
    ("generations", "dall-e-2"): _COMMON | {"response_format"},
    ("edits", _GPT): _GPT_FIELDS | {"input_fidelity"},
    ("edits", "dall-e-2"): _COMMON | {"response_format"},
}
_SIZES = {
    ("generations", _GPT): ("1024x1024", "1024x1536", "1536x1024", "auto"),
    ("edits", _GPT): ("256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "auto"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
_CHOICES = {
    (_GPT, "quality"): ("auto", "low", "medium", "high"),
    ("edits-gpt", "quality"): ("standard", "auto", "low", "medium", "high"),
    ("dall-e-3", "quality"): ("standard", "hd"),
    (_GPT, "output_format"): ("png", "jpeg", "webp"),
    (_GPT, "background"): ("transparent", "opaque", "auto"),
    (_GPT, "moderation"): ("low", "auto"),
    (_GPT, "input_fidelity"): ("high", "low"),
    ("dall-e-3", "style"): ("vivid", "natural"),
    ("dall-e", "response_format"): ("url", "b64_json"),
}
_MAX_PROMPT = {_GPT: 32000, "dall-e-3": 4000, "dall-e-2": 1000}
_MAX_IMAGES = 16
# Output image tokens by quality and size (reference §1.5, token view).
_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
_IMAGE_INPUT_TOKENS = 258  # per reference image; illustrative
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

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
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)
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
    """Answer an OpenAI images route (/v1/images/...), or None when `path` is not one.
    Header names are lower-case. Other /v1/ paths are left free (Vertex AI uses /v1/ too)."""
    if not path.startswith("/v1/images/"):
        return None
    endpoint = _ROUTES.get(path)
    if endpoint is None or method != "POST":
        response = error(404, f"Invalid URL ({method} {path})")
    else:
        host = headers.get("host") or "127.0.0.1"

        def admit(opts: SimulatorOptions, entry: dict[str, Any]) -> _Request:
            _check_key(opts, headers.get("authorization", ""))
            images: list[_File] = []
            if endpoint == "generations":
                fields = _parse_json(body)
            else:
                fields, images = _parse_form(headers.get("content-type", ""), body)
            model = fields.get("model")
            model = model if isinstance(model, str) else _default_model(endpoint)
            entry["model"] = model
            info = MODELS.get(model)
            if info is None or info.provider != PROVIDER:
                raise Reject(error(404, f"The model `{model}` does not exist or you do not "
                                        "have access to it.", code="model_not_found"),
                             "not_found")
            entry["references"] = len(images)
            if isinstance(fields.get("prompt"), str):
                entry["prompt"] = fields["prompt"]
            return _validate(endpoint, model, fields, images)

        def render(d: Decision, opts: SimulatorOptions, req: _Request) -> tuple[SimResponse, str]:
            return _render(core, host, d, opts, req)

        response = core.generation(PROVIDER, None, admit, render)
    response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
    return response


def error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> SimResponse:
    """OpenAI's error envelope: {"error": {"message", "type", "param", "code"}}."""
    doc = {"message": message, "type": type_, "param": param, "code": code, **extra}
    return json_response(status, {"error": doc})


def _invalid(message: str, param: str | None = None, code: str | None = None) -> Reject:
    return Reject(error(400, message, param=param, code=code), "invalid")


def _default_model(endpoint: str) -> str:
    # Generations default to dall-e-2 "unless a parameter specific to the GPT image models is
    # used"; edits to gpt-image-1.5 (reference §1.2, §1.4). The first rule is simplified.
    return "dall-e-2" if endpoint == "generations" else "gpt-image-1.5"


def _check_key(opts: SimulatorOptions, authorization: str) -> None:
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


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    name: str  # form field: "image", "image[]" or "mask"
    content_type: str
    data: bytes


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid(_BAD_JSON) from None
    if not isinstance(doc, dict):
        raise _invalid(f"Invalid type for request body: expected an object, but got "
                       f"{type(doc).__name__} instead.", code="invalid_type")
    return doc


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, Any], list[_File]]:
    """multipart/form-data → (text fields, image files). A small parser: exact bytes."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _invalid(f"Invalid Content-Type header ({content_type or 'none'}), expected "
                       "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                       "'Content-Type: multipart/form-data')")
    fields: dict[str, Any] = {}
    files: list[_File] = []
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise _invalid("The multipart body is malformed: no closing boundary.")
    for section in sections[1:-1]:
        head, sep, data = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise _invalid("The multipart body is malformed: a part has no headers.")
        part = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            header_name, colon, value = line.partition(":")
            if colon:
                part[header_name.strip()] = value.strip()
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise _invalid("The multipart body is malformed: a part has no name.")
        data = data.removesuffix(b"\r\n")
        if part.get_param("filename", header="content-disposition") is not None:
            if name not in ("image", "image[]", "mask"):
                raise _invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
            files.append(_File(name, part.get_content_type(), data))
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, [f for f in files if f.name != "mask"]


# --- validation -----------------------------------------------------------------------


@dataclass
class _Request:
    endpoint: str
    model: str
    prompt: str
    size: str
    quality: str
    output_format: str
    background: str
    response_format: str
    references: int

    @property
    def wants_image(self) -> bool:
        return True


def _family(model: str) -> str:
    return model if model in ("dall-e-2", "dall-e-3") else _GPT


def _validate(
    endpoint: str, model: str, fields: dict[str, Any], images: list[_File]
) -> _Request:
    family = _family(model)
    allowed = _FIELDS.get((endpoint, family))
    if allowed is None:  # dall-e-3 has no edits
        raise _invalid(f"Invalid value: '{model}'. Supported values are: 'dall-e-2', "
                       "'gpt-image-1', 'gpt-image-1-mini', and 'gpt-image-1.5'.", "model",
                       "invalid_value")
    for name in fields:
        if name not in allowed:
            raise _invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _invalid("Missing required parameter: 'prompt'.", "prompt",
                       "missing_required_parameter")
    limit = _MAX_PROMPT[family]
    if len(prompt) > limit:
        raise _invalid(f"Invalid 'prompt': string too long. Expected a string with maximum "
                       f"length {limit}, but got a string with length {len(prompt)} instead.",
                       "prompt", "string_above_max_length")
    _check_n(fields.get("n", 1), family)
    sizes = _SIZES.get((endpoint, family)) or _SIZES[family]
    size = _choice(fields, "size", sizes, sizes[-1] if family == _GPT else "1024x1024")
    quality_key = ("edits-gpt" if endpoint == "edits" else _GPT) if family == _GPT else family
    quality = _choice(fields, "quality", _CHOICES.get((quality_key, "quality"), ("standard",)),
                      "auto" if family == _GPT else "standard")
    gpt = family == _GPT
    output_format = _choice(fields, "output_format", _CHOICES[(_GPT, "output_format")], "png")
    background = _choice(fields, "background", _CHOICES[(_GPT, "background")], "auto")
    _choice(fields, "moderation", _CHOICES[(_GPT, "moderation")], "auto")
    _choice(fields, "style", _CHOICES[("dall-e-3", "style")], "vivid")
    _choice(fields, "input_fidelity", _CHOICES[(_GPT, "input_fidelity")], "low")
    if "input_fidelity" in fields and model == "gpt-image-1-mini":
        raise _invalid(f"Invalid value: 'input_fidelity' is not supported for {model}.",
                       "input_fidelity", "invalid_value")
    response_format = _choice(fields, "response_format", _CHOICES[("dall-e", "response_format")],
                              "b64_json" if gpt else "url")
    if background == "transparent" and output_format == "jpeg":
        raise _invalid("Transparent background is not supported with output_format 'jpeg'; "
                       "use 'png' or 'webp'.", "background", "invalid_value")
    if str(fields.get("stream", "false")).lower() == "true":
        raise _invalid("Streaming is not supported by the simulator.", "stream")
    if endpoint == "edits":
        _check_images(images, family)
    if INVALID_WORD in prompt:
        raise _invalid("Invalid value for 'prompt'.", "prompt", "invalid_value")
    return _Request(endpoint, model, prompt, size, quality, output_format, background,
                    response_format, len(images))


def _choice(fields: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = fields.get(name, default)
    if value not in allowed:
        values = ", ".join(f"'{v}'" for v in allowed)
        if len(allowed) > 1:
            head, _, last = values.rpartition(", ")
            values = f"{head}, and {last}" if len(allowed) > 2 else f"{head} and {last}"
        raise _invalid(f"Invalid value: '{value}'. Supported values are: {values}.", name,
                       "invalid_value")
    return value


def _check_n(raw: Any, family: str) -> None:
    n = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and raw.strip().isdigit():  # multipart fields are text
        n = int(raw)
    if n is None:
        raise _invalid(f"Invalid type for 'n': expected an integer, but got {raw!r} instead.",
                       "n", "invalid_type")
    if n < 1 or n > 10:
        raise _invalid(f"Invalid 'n': integer {'below minimum' if n < 1 else 'above maximum'} "
                       f"value. Expected a value {'>= 1' if n < 1 else '<= 10'}, but got {n} "
                       "instead.", "n", "integer_above_max_value" if n > 10 else
                       "integer_below_min_value")
    if family == "dall-e-3" and n != 1:
        raise _invalid("Invalid 'n': dall-e-3 only supports n=1.", "n", "invalid_value")


def _check_images(images: list[_File], family: str) -> None:
    if not images:
        raise _invalid("Missing required parameter: 'image'.", "image",
                       "missing_required_parameter")
    most = 1 if family == "dall-e-2" else _MAX_IMAGES
    if len(images) > most:
        raise _invalid(f"Invalid 'image': too many images. Expected at most {most}, but got "
                       f"{len(images)}.", "image", "invalid_value")
    for i, image in enumerate(images, 1):
        try:
            info = detect_image(image.data)
        except NotAnImageError:
            info = None
        if info is None or (family == "dall-e-2" and (
                info.mime_type != "image/png" or info.width != info.height)):
            raise _invalid(f"Invalid image file or mode for image {i}, please check your image "
                           "file.", "image", "invalid_image_file")


# --- responses ------------------------------------------------------------------------


def _render(
    core: SimulatorCore, host: str, d: Decision, opts: SimulatorOptions, req: _Request
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


def _blocked(req: _Request, stage: str, d: Decision) -> SimResponse:
    if req.model.startswith("dall-e"):
        return error(400, _CONTENT_POLICY[stage], code="content_policy_violation")
    category = "violence" if stage == "input" else "sexual"
    message = _MODERATION.format(uuid=uuid.UUID(bytes=d.token), category=category)
    return error(400, message, "image_generation_user_error", "moderation_blocked",
                 moderation_details={"moderation_stage": stage, "categories": [category]})


def _success(
    core: SimulatorCore, host: str, req: _Request, opts: SimulatorOptions, d: Decision
) -> SimResponse:
    gpt = _family(req.model) == _GPT
    size = "1024x1024" if req.size == "auto" else req.size
    output_format = req.output_format if gpt else "png"
    image = _draw(req.prompt, size, output_format, opts.scale)
    item: dict[str, Any] = {}
    if req.response_format == "url":
        name = f"img-{d.token.hex()}.{output_format}"
        core.store_file(name, _MIME[output_format], image)
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


def _draw(prompt: str, size: str, output_format: str, scale: int) -> bytes:
    width, height = (int(x) for x in size.split("x"))
    g = math.gcd(width, height)
    ratio = f"{width // g}:{height // g}"
    if output_format == "jpeg":
        return draw_image(prompt, aspect_ratio=ratio, mime_type="image/jpeg", scale=scale)
    png = draw_image(prompt, aspect_ratio=ratio, mime_type="image/png", scale=scale)
    if output_format == "png":
        return png
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as drawn:
        drawn.save(out, "WEBP", quality=80)
    return out.getvalue()
