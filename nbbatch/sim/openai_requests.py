"""The OpenAI simulator's front door: request bodies parsed and checked per model family.

JSON for generations, multipart for edits; every field checked as OpenAI checks it, with
OpenAI's own wording, so a client sees the same 400s it would see from the real API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import Message
from typing import Any

from nbbatch.images import NotAnImageError, detect_image
from nbbatch.sim.core import INVALID_WORD, Reject, SimResponse, json_response

GPT = "gpt"  # model families, as far as request fields go
_COMMON = {"model", "prompt", "n", "size", "user"}
_GPT_FIELDS = _COMMON | {"quality", "output_format", "output_compression", "background",
                         "stream", "partial_images"}
_FIELDS = {
    ("generations", GPT): _GPT_FIELDS | {"moderation"},
    ("generations", "dall-e-3"): _COMMON | {"quality", "style", "response_format"},
    ("generations", "dall-e-2"): _COMMON | {"response_format"},
    ("edits", GPT): _GPT_FIELDS | {"input_fidelity"},
    ("edits", "dall-e-2"): _COMMON | {"response_format"},
}
_SIZES = {
    ("generations", GPT): ("1024x1024", "1024x1536", "1536x1024", "auto"),
    ("edits", GPT): ("256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "auto"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
_CHOICES = {
    (GPT, "quality"): ("auto", "low", "medium", "high"),
    ("edits-gpt", "quality"): ("standard", "auto", "low", "medium", "high"),
    ("dall-e-3", "quality"): ("standard", "hd"),
    (GPT, "output_format"): ("png", "jpeg", "webp"),
    (GPT, "background"): ("transparent", "opaque", "auto"),
    (GPT, "moderation"): ("low", "auto"),
    (GPT, "input_fidelity"): ("high", "low"),
    ("dall-e-3", "style"): ("vivid", "natural"),
    ("dall-e", "response_format"): ("url", "b64_json"),
}
_MAX_PROMPT = {GPT: 32000, "dall-e-3": 4000, "dall-e-2": 1000}
_MAX_IMAGES = 16
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)

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


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    name: str  # form field: "image", "image[]" or "mask"
    content_type: str
    data: bytes


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid(_BAD_JSON) from None
    if not isinstance(doc, dict):
        raise _invalid(f"Invalid type for request body: expected an object, but got "
                       f"{type(doc).__name__} instead.", code="invalid_type")
    return doc


def parse_form(content_type: str, body: bytes,
               file_fields: tuple[str, ...] = ("image", "image[]", "mask"),
               ) -> tuple[dict[str, Any], list[UploadedFile]]:
    """multipart/form-data → (text fields, files but the mask). A small parser: exact bytes.
    `file_fields` are the names a file part may have."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _invalid(f"Invalid Content-Type header ({content_type or 'none'}), expected "
                       "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                       "'Content-Type: multipart/form-data')")
    fields: dict[str, Any] = {}
    files: list[UploadedFile] = []
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
            if name not in file_fields:
                raise _invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
            files.append(UploadedFile(name, part.get_content_type(), data))
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, [f for f in files if f.name != "mask"]


# --- validation -----------------------------------------------------------------------


@dataclass
class ImagesRequest:
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


def model_family(model: str) -> str:
    return model if model in ("dall-e-2", "dall-e-3") else GPT


def validate(
    endpoint: str, model: str, fields: dict[str, Any], images: list[UploadedFile]
) -> ImagesRequest:
    family = model_family(model)
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
    size = _choice(fields, "size", sizes, sizes[-1] if family == GPT else "1024x1024")
    quality_key = ("edits-gpt" if endpoint == "edits" else GPT) if family == GPT else family
    quality = _choice(fields, "quality", _CHOICES.get((quality_key, "quality"), ("standard",)),
                      "auto" if family == GPT else "standard")
    gpt = family == GPT
    output_format = _choice(fields, "output_format", _CHOICES[(GPT, "output_format")], "png")
    background = _choice(fields, "background", _CHOICES[(GPT, "background")], "auto")
    _choice(fields, "moderation", _CHOICES[(GPT, "moderation")], "auto")
    _choice(fields, "style", _CHOICES[("dall-e-3", "style")], "vivid")
    _choice(fields, "input_fidelity", _CHOICES[(GPT, "input_fidelity")], "low")
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
    return ImagesRequest(endpoint, model, prompt, size, quality, output_format, background,
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


def _check_images(images: list[UploadedFile], family: str) -> None:
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
