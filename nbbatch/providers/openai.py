"""The OpenAI Images API: POST {base_url}/images/generations, or /images/edits with references.

One request per call and no retries: pacing, retry and failover live in the runner. The rules
are those of shared/reference/openai-and-other-apis.md §0.1, §1, §2 and §7.

- The request always names its model (OpenAI's default would be dall-e-2) and asks for one
  image. GPT image models get `quality`, `output_format`, `background` and, on generations
  only, `moderation`, from the provider's options; dall-e models get the few fields they
  accept and `response_format: b64_json`.
- OpenAI takes a pixel size, not an aspect ratio: `size_for` picks the model's size nearest
  to the ratio asked for (none asked: "auto"). `ImageRequest.image_size` ("1K", "2K"...) has
  no OpenAI equivalent and is ignored.
- Reference images turn the request into a multipart edit: one `image[]` part per image.
- `classify` turns any response into a GeneratedImage, an ImageURL (dall-e's 60-minute link,
  which generate() downloads once), or the ProviderError it means.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
    UsageError,
)
from nbbatch.images import NotAnImageError, detect_image
from nbbatch.manifest import ProviderConfig
from nbbatch.providers.base import GeneratedImage, ImageRequest, Provider
from nbbatch.providers.http import (
    RawResponse,
    get_bytes,
    new_client,
    post_json,
    post_multipart,
    redactor,
    retry_after_from_headers,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a 1536x1024 PNG is a few MB in base64

# Models that still answer today but are reported to go away; the lead warns at plan/run.
DEPRECATED_MODELS = {
    "dall-e-3": "dall-e-3 may be retired (reported shut down 2026-05-12); "
                "use gpt-image-1, gpt-image-1-mini or gpt-image-1.5",
    "dall-e-2": "dall-e-2 may be retired (reported shut down 2026-05-12); "
                "use gpt-image-1-mini or gpt-image-1",
}  # fmt: skip

# providers.openai options (ProviderConfig.options) and the values each accepts.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "quality": ("auto", "low", "medium", "high"),
    "background": ("auto", "transparent", "opaque"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),  # edits only
}
TEXT_OPTIONS = ("organization", "project")  # sent as OpenAI-Organization / OpenAI-Project
OPTION_DEFAULTS = {"quality": "auto", "background": "auto", "output_format": "png"}

# Sizes each model family can produce, as (width, height).
_GPT_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
_DALL_E_3_SIZES = ((1024, 1024), (1792, 1024), (1024, 1792))
_DALL_E_2_SIZES = ((1024, 1024),)

# error.code values that mean the account has no money or credit left: nothing will work today.
QUOTA_CODES = frozenset({
    "insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded", "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
})  # fmt: skip
BLOCKED_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
OVERLOAD_CODES = frozenset({"rate_limit_exceeded", "slow_down", "server_is_overloaded"})
OVERLOAD_TYPES = frozenset({"requests", "rate_limit_error", "service_unavailable_error"})

# The server echoes part of a rejected key ("Incorrect API key provided: sk-abc***wxyz").
_KEY_ECHO = re.compile(r"\b(?:sk|sess)-[A-Za-z0-9_*\-]{2,}")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_MAX_MESSAGE = 500


def check_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The provider's options with defaults filled in; UsageError naming a bad key or value.

    Keys other than OPTION_CHOICES and TEXT_OPTIONS belong to someone else and are ignored.
    """
    out = dict(OPTION_DEFAULTS)
    for name, allowed in OPTION_CHOICES.items():
        value = options.get(name)
        if value is None:
            continue
        if value not in allowed:
            raise UsageError(f"providers.openai.{name}: {value!r} is not one of "
                             f"{', '.join(allowed)}")
        out[name] = value
    for name in TEXT_OPTIONS:
        value = options.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                raise UsageError(f"providers.openai.{name}: must be a one-line id, got {value!r}")
            out[name] = value.strip()
    if out["background"] == "transparent" and out["output_format"] == "jpeg":
        raise UsageError("providers.openai.background: transparent needs output_format png "
                         "or webp, not jpeg")
    return out


def is_dall_e(model: str) -> bool:
    return model.startswith("dall-e")


def size_for(model: str, aspect_ratio: str | None) -> str:
    """The `size` to send: the model's size nearest (in log ratio) to `aspect_ratio`.

    No ratio: "auto" for GPT image models, "1024x1024" for dall-e (which has no "auto").
    Ties go to the square size. A ratio that is not "W:H" raises InvalidRequestError.
    """
    sizes = (_DALL_E_3_SIZES if model.startswith("dall-e-3")
             else _DALL_E_2_SIZES if is_dall_e(model) else _GPT_SIZES)
    if aspect_ratio is None:
        return "1024x1024" if is_dall_e(model) else "auto"
    match = _RATIO.match(aspect_ratio)
    if not match or float(match.group(1)) <= 0 or float(match.group(2)) <= 0:
        raise InvalidRequestError(f"aspect ratio {aspect_ratio!r} must look like 16:9")
    wanted = math.log(float(match.group(1)) / float(match.group(2)))
    width, height = min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - wanted))
    return f"{width}x{height}"


def build_generation_body(request: ImageRequest, options: Mapping[str, str]) -> dict[str, Any]:
    """The JSON for POST /images/generations. `options` as returned by check_options."""
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": request.prompt,
        "n": 1,
        "size": size_for(request.model, request.aspect_ratio),
    }
    if is_dall_e(request.model):
        body.update(_dall_e_fields(request.model, options))
        return body
    body.update(quality=options["quality"], output_format=options["output_format"],
                background=options["background"])
    if options.get("moderation"):
        body["moderation"] = options["moderation"]
    return body


def build_edit_form(
    request: ImageRequest, options: Mapping[str, str]
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """Text fields and file parts for POST /images/edits (multipart): one `image[]` each.

    The edits endpoint takes no `moderation`. dall-e-3 cannot edit (InvalidRequestError);
    dall-e-2 takes a single square PNG as `image`.
    """
    model = request.model
    if model.startswith("dall-e-3"):
        raise InvalidRequestError(f"{model} cannot edit images: remove the reference images "
                                  "or use a gpt-image model")
    data = {"model": model, "prompt": request.prompt, "n": "1",
            "size": size_for(model, request.aspect_ratio)}
    if is_dall_e(model):
        if len(request.references) != 1:
            raise InvalidRequestError(f"{model} edits take exactly one reference image, "
                                      f"got {len(request.references)}")
        data.update(_dall_e_fields(model, options))
        ref = request.references[0]
        return data, [("image", ("image-1.png", ref.data, ref.mime_type))]
    data.update(quality=options["quality"], output_format=options["output_format"],
                background=options["background"])
    if options.get("input_fidelity") and model != "gpt-image-1-mini":
        data["input_fidelity"] = options["input_fidelity"]
    files = [
        ("image[]", (f"image-{i}.{_extension(ref.mime_type)}", ref.data, ref.mime_type))
        for i, ref in enumerate(request.references, 1)
    ]
    return data, files


def _dall_e_fields(model: str, options: Mapping[str, str]) -> dict[str, str]:
    fields = {"response_format": "b64_json"}
    if model.startswith("dall-e-3"):
        fields["quality"] = "hd" if options.get("quality") == "high" else "standard"
    return fields


def _extension(mime_type: str) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(mime_type, "png")


@dataclass(frozen=True)
class ImageURL:
    """A success whose image must be downloaded (dall-e `url` answers, valid 60 minutes)."""

    url: str
    model: str
    usage: Mapping[str, Any]
    request_id: str | None
    text: str | None


class OpenAIProvider(Provider):
    def __init__(
        self,
        config: ProviderConfig,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or config.name
        self.config = config
        self.options = check_options(config.options)
        self._api_key = api_key
        self._redact = redactor(api_key)
        self._base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if "organization" in self.options:
            self._headers["OpenAI-Organization"] = self.options["organization"]
        if "project" in self.options:
            self._headers["OpenAI-Project"] = self.options["project"]
        self._client = new_client(transport, config.timeout)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        try:
            form = build_edit_form(request, self.options) if request.references else None
            body = None if form else build_generation_body(request, self.options)
        except InvalidRequestError as exc:  # refused before sending: nothing was billed
            raise InvalidRequestError(exc.message, provider=self.name) from None
        raw = await self._post(form, body)
        result = classify(raw.status, raw.headers, raw.body, provider=self.name,
                          redact=self._redact, model=request.model,
                          key_env=self.config.api_key_env or DEFAULT_KEY_ENV)
        if isinstance(result, ImageURL):
            return await self._download(result)
        return result

    async def _post(
        self, form: tuple[dict[str, str], list[Any]] | None, body: dict[str, Any] | None
    ) -> RawResponse:
        if form is not None:
            data, files = form
            return await post_multipart(
                self._client, f"{self._base_url}/images/edits", data=data, files=files,
                headers=self._headers, timeout=self.config.timeout,
                max_bytes=MAX_RESPONSE_BYTES, provider=self.name, redact=self._redact,
            )
        return await post_json(
            self._client, f"{self._base_url}/images/generations", json=body,
            headers={**self._headers, "Content-Type": "application/json"},
            timeout=self.config.timeout, max_bytes=MAX_RESPONSE_BYTES, provider=self.name,
            redact=self._redact,
        )

    async def _download(self, link: ImageURL) -> GeneratedImage:
        """Fetch a dall-e image URL once. It was generated, so any failure is possibly billed.

        No key goes with it: the link is pre-signed, and usually on another host.
        """
        ctx: dict[str, Any] = {"provider": self.name, "request_id": link.request_id,
                               "usage": dict(link.usage) or None}
        if urlsplit(link.url).scheme not in ("http", "https"):
            raise TransientError(f"the image URL in the response is not http(s): "
                                 f"{_message(link.url[:80], self._redact)}",
                                 possibly_billed=True, **ctx)
        try:
            raw = await get_bytes(self._client, link.url, timeout=self.config.timeout,
                                  max_bytes=MAX_RESPONSE_BYTES, provider=self.name,
                                  redact=self._redact, follow_redirects=True)
        except TransientError as exc:
            raise TransientError(f"downloading the image failed: {exc.message}",
                                 possibly_billed=True, **ctx) from None
        if not 200 <= raw.status < 300:
            raise TransientError(f"downloading the image failed: HTTP {raw.status}",
                                 possibly_billed=True, status=raw.status, **ctx)
        return _image(raw.body, link.model, link.usage, link.request_id, link.text, ctx,
                      self._redact)

    async def aclose(self) -> None:
        await self._client.aclose()


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str,
    redact: Callable[[str], str],
    model: str,
    key_env: str | None = None,
) -> GeneratedImage | ImageURL:
    """Turn one HTTP response into its image (or the URL to fetch it from), or raise the
    ProviderError it means (reference §0.1). `key_env` names the key's variable in the
    message for a rejected key.
    """
    headers = httpx.Headers(headers)
    doc = _parse(body)
    usage = _dict(_get(doc, "usage")) or None
    ctx: dict[str, Any] = {"provider": provider, "status": status,
                           "request_id": headers.get("x-request-id"), "usage": usage}
    error = _get(doc, "error")
    if 200 <= status < 300 and error is None:
        if doc is None:
            # A cut-off JSON answer was probably generated, so possibly billed; a portal's page not.
            cut_json = body.lstrip()[:1] in (b"{", b"[")
            message = "truncated or invalid JSON" if cut_json else _describe_body(status, body)
            raise TransientError(_message(message, redact), possibly_billed=cut_json, **ctx)
        return _read_success(doc, ctx, model, redact)
    _raise_for_error(status, headers, body, doc, ctx, redact, model, key_env)


def _read_success(
    doc: dict[str, Any], ctx: dict[str, Any], model: str, redact: Callable[[str], str]
) -> GeneratedImage | ImageURL:
    data = doc.get("data")
    first = _dict(data[0]) if isinstance(data, list) and data else {}
    text = _str(first.get("revised_prompt"))
    usage = ctx["usage"] or {}
    encoded = first.get("b64_json")
    if isinstance(encoded, str) and encoded:
        try:
            image_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise TransientError("image data is not valid base64", possibly_billed=True,
                                 **ctx) from None
        return _image(image_bytes, model, usage, ctx["request_id"], text, ctx, redact)
    url = _str(first.get("url"))
    if url:
        return ImageURL(url, model, usage, ctx["request_id"], text)
    reason = "no data" if not first else "no b64_json or url in data[0]"
    raise TransientError(f"no image in the response ({reason})", **ctx)


def _image(
    data: bytes,
    model: str,
    usage: Mapping[str, Any],
    request_id: str | None,
    text: str | None,
    ctx: dict[str, Any],
    redact: Callable[[str], str],
) -> GeneratedImage:
    try:
        info = detect_image(data)
    except NotAnImageError as exc:
        raise TransientError(_message(f"received bytes are not an image: {exc}", redact),
                             possibly_billed=True, **ctx) from None
    return GeneratedImage(data=data, mime_type=info.mime_type, model=model, usage=usage,
                          request_id=request_id, text=text)


def _raise_for_error(
    status: int,
    headers: httpx.Headers,
    body: bytes,
    doc: dict[str, Any] | None,
    ctx: dict[str, Any],
    redact: Callable[[str], str],
    model: str,
    key_env: str | None,
) -> NoReturn:
    error = _get(doc, "error")
    err = _dict(error)
    code = _str(err.get("code")) or ""
    kind = _str(err.get("type")) or ""
    provider_message = _str(err.get("message")) or _str(error)
    message = _message(provider_message or _describe_body(status, body), redact)
    waited = retry_after_from_headers(headers)
    should_retry = (headers.get("x-should-retry") or "").strip().lower()

    if 300 <= status < 400:
        where = headers.get("location", "elsewhere")
        raise FatalError(_message(f"unexpected redirect (HTTP {status}) to {where}; check "
                                  "base_url", redact), **ctx)
    if status in (401, 403) or code == "invalid_api_key":
        variable = key_env or DEFAULT_KEY_ENV
        what = "rejected" if status == 401 or code == "invalid_api_key" else "not allowed"
        raise FatalError(f"API key {what} (HTTP {status}): {message} Check {variable}.", **ctx)
    if code in QUOTA_CODES or kind == "insufficient_quota":
        raise QuotaExhaustedError(_message(f"quota exhausted ({code or kind}): {message}",
                                           redact), **ctx)
    if code in BLOCKED_CODES:
        raise BlockedError(message, **ctx)
    if code == "model_not_found" or status == 404:
        hint = f" ({DEPRECATED_MODELS[model]})" if model in DEPRECATED_MODELS else ""
        if not hint and not provider_message:
            hint = " (check the model name and base_url)"
        raise UnknownModelError(message + hint, **ctx)
    if status == 429 or code in OVERLOAD_CODES or kind in OVERLOAD_TYPES:
        if doc is None and status == 429:  # Cloudflare's "error code: 1015", text/plain
            message = _message(f"rate limited at the edge: {_describe_body(status, body)}",
                               redact)
        raise TransientError(message, overload=True, retry_after=waited, **ctx)
    retriable = status >= 500 or status in (408, 409) or 200 <= status < 300
    if retriable and should_retry == "false":
        raise InvalidRequestError(_message(f"{message} (HTTP {status}; the server said not to "
                                           "retry: x-should-retry: false)", redact), **ctx)
    if retriable:
        raise TransientError(message, overload=status in (502, 503), retry_after=waited, **ctx)
    if should_retry == "true":  # an unexplained 4xx the server says is worth another try
        raise TransientError(message, retry_after=waited, **ctx)
    raise InvalidRequestError(message, **ctx)


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, truncated, bad UTF-8, absurdly nested
        return None
    return doc if isinstance(doc, dict) else None


def _describe_body(code: int, body: bytes) -> str:
    """A message for a response without OpenAI's JSON: a proxy's page, Cloudflare's text."""
    head = f"HTTP {code} {httpx.codes.get_reason_phrase(code)}".rstrip()
    if not body.strip():
        return f"{head} with an empty body"
    title = _TITLE.search(body[:4096])
    snippet = (title.group(1) if title else body[:200]).decode("utf-8", "replace")
    kind = "HTML page" if title or body.lstrip()[:1] == b"<" else "non-JSON body"
    return f"{head} ({kind}: {snippet.strip()})"


def _message(text: str, redact: Callable[[str], str]) -> str:
    # Redact before shortening, so a key cut in half can never slip through. Keys the server
    # echoes in part ("sk-proj-****...ABCD") go too, whatever key this client holds.
    text = " ".join(_KEY_ECHO.sub("sk-***", redact(text)).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _get(obj: object, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else None


def _dict(obj: object) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


def _str(obj: object) -> str | None:
    return obj if isinstance(obj, str) and obj else None
