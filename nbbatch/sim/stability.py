"""The Stability AI side of the simulator: POST /v2beta/stable-image/generate/{core|ultra|sd3}
and GET /v1/user/balance.

The shared flow (outage, daily quota, "[blocked]", random faults) is SimulatorCore.generation
in core.py; this module checks and answers requests in Stability's shapes:

- auth: `Authorization: Bearer KEY`; none, or another key than `api_key` → 401 `unauthorized`.
- front door: multipart/form-data only (a urlencoded form → 400, as multipart is required
  even with no file); `Accept` image/* (the default), application/json or */*, else 400;
  fields checked per endpoint (unknown field, prompt, aspect ratio, format, style preset,
  seed, SD3.5 `model` and image-to-image `mode`/`image`/`strength`) → 400 `bad_request`
  {"id", "name", "errors": [...]}; "[invalid]" in the prompt → 400.
- faults: overloaded → 503; rate_limited → 429 "more than 150 requests in 10 seconds" with a
  `retry-after` of `retry_delay` (a simulator convenience: the real API is not known to send
  one, and locks the key out for 60 s); internal and no_image → 500 (Stability has no success
  without an image); timeout → hangs, then a 504 page; blocked and "[blocked]" → 403
  `content_moderation`; daily quota → 402 `payment_required`.
- success: the image drawn by images.py in `output_format`, raw with `finish-reason` and
  `seed` headers, or JSON {"image", "finish_reason", "seed"}. "[filtered]" in the prompt
  answers 200 `CONTENT_FILTERED` with a blurred image (logged as blocked).
- balance: {"credits": N}, 3 credits per image left under the daily quota, else 1000.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFilter

from nbbatch.catalog import STABILITY_RATIOS
from nbbatch.images import PNG, NotAnImageError, detect_image, format_for
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

PROVIDER = "stability"
FILTERED_WORD = "[filtered]"
_PREFIX = "/v2beta/stable-image/generate/"
_MODELS = {"core": "stable-image-core", "ultra": "stable-image-ultra"}
_SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium")
_COMMON = {"prompt", "aspect_ratio", "negative_prompt", "seed", "style_preset", "output_format",
           "none"}  # "none": the empty part Stability's own samples send to force multipart
_FIELDS = {"core": _COMMON, "ultra": _COMMON, "sd3": _COMMON | {"model", "mode", "strength"}}
_FORMATS = {"core": ("png", "jpeg", "webp"), "ultra": ("png", "jpeg", "webp"),
            "sd3": ("png", "jpeg")}
_STYLES = ("enhance", "anime", "photographic", "digital-art", "comic-book", "fantasy-art",
           "line-art", "analog-film", "neon-punk", "isometric", "low-poly", "origami",
           "modeling-compound", "cinematic", "3d-model", "pixel-art", "tile-texture")
_MAX_PROMPT, _MAX_SEED = 10_000, 4_294_967_294
_CREDITS_PER_IMAGE = 3.0
_MODERATION = ("Your request was flagged by our content moderation system, as a result your "
               "request was denied and you were not charged.")
_GATEWAY_TIMEOUT = b"<html><head><title>504 Gateway Time-out</title></head></html>"


def route(
    core: SimulatorCore,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> SimResponse | None:
    """Answer a Stability route, or None when `path` is not one (header names lower-case)."""
    if method == "GET" and path == "/v1/user/balance":
        return _balance(core, headers)
    if not path.startswith("/v2beta/"):
        return None
    endpoint = path.removeprefix(_PREFIX)
    if not path.startswith(_PREFIX) or endpoint not in _FIELDS or method != "POST":
        return error(404, "not_found", f"{method} {path}: no such route")

    def admit(opts: SimulatorOptions, entry: dict[str, Any]) -> _Request:
        _check_key(opts, headers)
        accept = _accept(headers.get("accept", ""))
        fields, files = _parse_form(headers.get("content-type", ""), body)
        entry["model"] = _MODELS.get(endpoint) or fields.get("model") or "sd3.5-large"
        entry["references"] = len(files)
        if isinstance(fields.get("prompt"), str):
            entry["prompt"] = fields["prompt"]
        return _validate(endpoint, entry["model"], fields, files, accept)

    return core.generation(PROVIDER, None, admit, _render)


def error(status: int, name: str, *errors: str) -> SimResponse:
    """Stability's error envelope: {"id", "name", "errors": [...]}."""
    response = json_response(status, {"id": uuid.uuid4().hex, "name": name,
                                      "errors": list(errors)})
    response.headers["x-request-id"] = uuid.uuid4().hex
    return response


def _invalid(*errors: str) -> Reject:
    return Reject(error(400, "bad_request", *errors), "invalid")


def _check_key(opts: SimulatorOptions, headers: Mapping[str, str]) -> None:
    scheme, _, key = headers.get("authorization", "").strip().partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    if not key or (opts.api_key is not None and key != opts.api_key):
        raise Reject(error(401, "unauthorized", "authorization: API key missing or invalid"),
                     "auth")


def _balance(core: SimulatorCore, headers: Mapping[str, str]) -> SimResponse:
    try:
        _check_key(core.options, headers)
    except Reject as r:
        return r.response
    opts = core.options
    credits = 1000.0
    if opts.daily_quota is not None and opts.quota_target in ("all", PROVIDER):
        used = core.stats()["quota_used_by_provider"].get(PROVIDER, 0)
        credits = max(0, opts.daily_quota - used) * _CREDITS_PER_IMAGE
    return json_response(200, {"credits": credits})


def _accept(value: str) -> str:
    kinds = [v.split(";")[0].strip().lower() for v in value.split(",") if v.strip()]
    for kind in kinds or ["image/*"]:
        if kind in ("image/*", "*/*"):
            return "image/*"
        if kind == "application/json":
            return kind
    raise _invalid(f"accept: must be image/* or application/json, got {value!r}")


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], list[bytes]]:
    """(text fields, the bytes of each `image` part) of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise _invalid("content-type: must be multipart/form-data")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _invalid("body: is not a valid multipart/form-data body")
    fields: dict[str, str] = {}
    files: list[bytes] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            raise _invalid("body: a part has no name")
        if name == "image":
            files.append(data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


@dataclass
class _Request:
    endpoint: str
    model: str
    prompt: str
    aspect_ratio: str
    output_format: str
    seed: int
    accept: str
    references: int

    @property
    def wants_image(self) -> bool:
        return True


def _validate(
    endpoint: str, model: str, fields: dict[str, str], files: list[bytes], accept: str
) -> _Request:
    for name in fields:
        if name not in _FIELDS[endpoint]:
            raise _invalid(f"{name}: is not a parameter of this endpoint")
    prompt = fields.get("prompt", "")
    if not prompt.strip():
        raise _invalid("prompt: is required")
    if len(prompt) > _MAX_PROMPT or len(fields.get("negative_prompt", "")) > _MAX_PROMPT:
        raise _invalid(f"prompt: must be at most {_MAX_PROMPT} characters")
    ratio = _choice(fields, "aspect_ratio", STABILITY_RATIOS, "1:1") or "1:1"
    output_format = _choice(fields, "output_format", _FORMATS[endpoint], "png") or "png"
    _choice(fields, "style_preset", _STYLES, None)
    seed_text = fields.get("seed", "0")
    if not seed_text.isdigit() or int(seed_text) > _MAX_SEED:
        raise _invalid(f"seed: must be an integer from 0 to {_MAX_SEED}")
    if endpoint == "sd3":
        _choice(fields, "model", _SD3_MODELS, "sd3.5-large")
        _image_to_image(fields, files)
    elif files:
        raise _invalid("image: is not a parameter of this endpoint")
    if INVALID_WORD in prompt:
        raise _invalid("prompt: contains a word the simulator rejects")
    return _Request(endpoint, model, prompt, ratio, output_format, int(seed_text), accept,
                    len(files))


def _choice(
    fields: dict[str, str], name: str, allowed: tuple[str, ...], default: str | None
) -> str | None:
    value = fields.get(name, default)
    if value is not None and value not in allowed:
        raise _invalid(f"{name}: must be one of {', '.join(allowed)}")
    return value


def _image_to_image(fields: dict[str, str], files: list[bytes]) -> None:
    mode = _choice(fields, "mode", ("text-to-image", "image-to-image"), "text-to-image")
    if mode == "text-to-image":
        if files or "strength" in fields:
            raise _invalid("image: only allowed with mode image-to-image")
        return
    if len(files) != 1:
        raise _invalid("image: image-to-image takes exactly one image")
    if "aspect_ratio" in fields:
        raise _invalid("aspect_ratio: not allowed with mode image-to-image")
    try:
        strength = float(fields.get("strength", ""))
    except ValueError:
        strength = -1.0
    if not 0 <= strength <= 1:
        raise _invalid("strength: is required with mode image-to-image, from 0 to 1")
    try:
        detect_image(files[0])
    except NotAnImageError:
        raise _invalid("image: is not a valid PNG, JPEG or WEBP image") from None


def _render(d: Decision, opts: SimulatorOptions, req: _Request) -> tuple[SimResponse, str]:
    outcome = "blocked" if d.outcome == "blocked_prompt" else d.outcome
    if d.outcome == "success":
        response, outcome = _success(req, opts, d)
    elif d.outcome == "overloaded":
        response = error(503, "service_unavailable", "The service is temporarily overloaded; "
                         "please try again later.")
    elif d.outcome == "rate_limited":
        response = error(429, "rate_limit_exceeded",
                         "You have made more than 150 requests in 10 seconds.")
        response.headers["retry-after"] = str(math.ceil(opts.retry_delay))
    elif d.outcome == "quota":
        response = error(402, "payment_required", "You lack sufficient credits to make this "
                         "request. Please purchase more credits and try again.")
    elif d.outcome in ("internal", "no_image"):
        response = error(500, "internal_error", "An unexpected server error has occurred, "
                         "please try again later.")
    elif d.outcome == "timeout":
        response = SimResponse(504, {"Content-Type": "text/html"}, _GATEWAY_TIMEOUT)
    else:  # blocked, blocked_prompt
        response = error(403, "content_moderation", _MODERATION)
    response.delay = d.delay
    response.headers["x-request-id"] = d.token.hex()
    return response, outcome


def _success(req: _Request, opts: SimulatorOptions, d: Decision) -> tuple[SimResponse, str]:
    seed = req.seed or int.from_bytes(d.token[:4], "big") % _MAX_SEED + 1
    filtered = FILTERED_WORD in req.prompt
    data, mime = _draw(req.prompt, req.aspect_ratio, req.output_format, opts.scale,
                       blur=filtered)
    finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
    if req.accept == "application/json":
        response = json_response(200, {"image": base64.b64encode(data).decode(),
                                       "finish_reason": finish, "seed": seed})
        response.headers["Content-Type"] = f"application/json; type={mime}"
    else:
        response = SimResponse(200, {"Content-Type": mime, "finish-reason": finish,
                                     "seed": str(seed)}, data)
    return response, "blocked" if filtered else "success"


def _draw(prompt: str, ratio: str, output_format: str, scale: int, *,
          blur: bool) -> tuple[bytes, str]:
    """The image in `output_format` (png, jpeg or webp: Stability's names are MIME subtypes)
    and its MIME type; blurred as Stability's moderation leaves a filtered image."""
    fmt = format_for(f"image/{output_format}") or PNG
    png = draw_image(prompt, aspect_ratio=ratio, mime_type=PNG.mime_type, scale=scale)
    if fmt is PNG and not blur:
        return png, fmt.mime_type
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as drawn:
        image = drawn.filter(ImageFilter.GaussianBlur(8)) if blur else drawn
        image.convert("RGB").save(out, fmt.pillow)
    return out.getvalue(), fmt.mime_type
