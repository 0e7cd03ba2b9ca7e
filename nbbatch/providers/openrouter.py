"""OpenRouter (and gateways like it): images through POST {base_url}/chat/completions.

One request per call and no retries: pacing, retry and failover live in the engine. What comes
back is read in openrouter_answers.py.

- The request asks for `modalities: ["image", "text"]` and passes the aspect ratio as
  `image_config.aspect_ratio`; `image_config.image_size` goes only to models that list that
  size (or that nbbatch does not know). Reference images are `image_url` parts holding data
  URLs, after the text.
- Models are OpenRouter ids, `vendor/model`. `HTTP-Referer` and `X-Title` (OpenRouter's
  attribution headers) are sent when the `referer` and `title` options are set.
- OpenRouter reports what each answer cost in `usage.cost` (its credits are US dollars);
  the usage is kept with the image and `catalog.image_cost` counts that charge.
- Pre-flight (`check`): GET {base_url}/key checks the key and its spending limit, then
  GET {base_url}/models/{vendor}/{model}/endpoints checks that the model exists and makes
  images. Both are free. A gateway without them gets CheckUnavailable.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from nbbatch import catalog
from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    OptionError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest
from nbbatch.providers.keyed import KeyedProvider
from nbbatch.providers.openrouter_answers import DEFAULT_KEY_ENV, ImageLink, classify
from nbbatch.providers.wire import (
    as_dict,
    as_number,
    get,
    get_bytes,
    looks_like_json,
    parse_object,
    post_json,
)
from nbbatch.text import shown

__all__ = ["OpenRouterProvider", "attribution_headers", "build_body", "check_options",
           "classify", "create"]

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a 4K image is ~20 MB in a base64 data URL
_HEADER_OPTIONS = {"referer": "HTTP-Referer", "title": "X-Title"}


def attribution_headers(options: Mapping[str, Any]) -> dict[str, str]:
    """The attribution headers from the provider's options; OptionError for a bad value.
    Keys that are not OpenRouter options belong to someone else and are ignored."""
    headers: dict[str, str] = {}
    for name, header in _HEADER_OPTIONS.items():
        value = options.get(name)
        if value is None:
            continue
        if (not isinstance(value, str) or not value.strip() or not value.isascii()
                or any(c in value for c in "\r\n")):
            raise OptionError(name, f"must be one line of ASCII text, got {shown(value)}")
        headers[header] = value.strip()
    return headers


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as given, once checked (what the manifest keeps)."""
    attribution_headers(options)
    return dict(options)


def build_body(request: ImageRequest) -> dict[str, Any]:
    """The chat-completions JSON asking for one image."""
    content: str | list[dict[str, Any]] = request.prompt
    if request.references:
        content = [{"type": "text", "text": request.prompt}] + [
            {"type": "image_url", "image_url": {
                "url": f"data:{ref.mime_type};base64,{base64.b64encode(ref.data).decode()}"}}
            for ref in request.references
        ]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": "user", "content": content}],
        "modalities": ["image", "text"],
    }
    image_config: dict[str, str] = {}
    if request.aspect_ratio:
        image_config["aspect_ratio"] = request.aspect_ratio
    info = catalog.lookup(request.model)
    if request.image_size and (info is None or request.image_size in info.image_sizes):
        image_config["image_size"] = request.image_size
    if image_config:
        body["image_config"] = image_config
    return body


class OpenRouterProvider(KeyedProvider):
    default_base_url = DEFAULT_BASE_URL
    default_key_env = DEFAULT_KEY_ENV

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str | None = None) -> None:
        super().__init__(config, api_key, transport=transport, name=name)
        attribution = self.settled(attribution_headers)
        self._headers = {"Authorization": f"Bearer {api_key}", **attribution}

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        raw = await post_json(
            self._client, f"{self._base_url}/chat/completions", json=build_body(request),
            headers={**self._headers, "Content-Type": "application/json"},
            timeout=self.config.timeout, max_bytes=MAX_RESPONSE_BYTES, provider=self.name,
            redact=self._redact,
        )
        result = classify(raw.status, raw.headers, raw.body, provider=self.name,
                          redact=self._redact, model=request.model, key_env=self._key_env)
        if isinstance(result, ImageLink):
            return await self.download(result, MAX_RESPONSE_BYTES)
        return result

    async def check(self, model: str) -> None:
        """Pre-flight for one model: the key is accepted and has credit left, and the model
        exists and outputs images. Raises FatalError, QuotaExhaustedError or
        UnknownModelError as a generation answer would; CheckUnavailable when the server
        gives no usable answer (another gateway without these routes, a connection error,
        an overload, no upstream serving the model right now): send one request alone."""
        try:
            await self._check(model)
        except (TransientError, InvalidRequestError) as exc:
            raise CheckUnavailable(exc.message) from None

    async def _check(self, model: str) -> None:
        key = await self._metadata("/key", model)
        remaining = as_number(get(get(key, "data"), "limit_remaining"))
        if remaining is not None and remaining <= 0:
            raise QuotaExhaustedError("the OpenRouter key's spending limit is used up: raise it "
                                      "at openrouter.ai/settings/keys", provider=self.name)
        vendor, slash, slug = model.partition("/")
        if not slash or not vendor or not slug:
            raise CheckUnavailable(f"{model!r} is not a vendor/model id: it cannot be looked "
                                   "up before the first request")
        path = f"/models/{quote(vendor, safe='')}/{quote(slug, safe='/:')}/endpoints"
        data = as_dict(get(await self._metadata(path, model), "data"))
        outputs = get(get(data, "architecture"), "output_modalities")
        if isinstance(outputs, list) and "image" not in outputs:
            said = ", ".join(map(str, outputs)) or "none"  # server text: redacted, shortened
            raise UnknownModelError(self._redact.message(
                f"{model} does not make images on OpenRouter (its outputs: {said})"),
                provider=self.name)
        if isinstance(data.get("endpoints"), list) and not data["endpoints"]:
            raise CheckUnavailable(f"no OpenRouter provider serves {model} right now")

    async def _metadata(self, path: str, model: str) -> dict[str, Any]:
        """GET a metadata route: its JSON object, or the ProviderError its answer means."""
        raw = await get_bytes(
            self._client, f"{self._base_url}{path}", headers=self._headers,
            timeout=min(self.config.timeout, 30.0), max_bytes=4 * 1024 * 1024,
            provider=self.name, redact=self._redact,
        )
        doc = parse_object(raw.body)
        success = 200 <= raw.status < 300
        if (raw.status in (405, 501) or (raw.status == 404 and get(doc, "error") is None)
                or (success and not looks_like_json(raw.body))):
            raise CheckUnavailable(self._redact.message(
                f"no metadata route at {self._base_url}{path} (HTTP {raw.status})"))
        if success and doc is not None and "error" not in doc:
            return doc
        try:  # a rejected key, an unknown model, an overload: what a generation answer means
            classify(raw.status, raw.headers, raw.body, provider=self.name,
                     redact=self._redact, model=model, key_env=self._key_env)
        except BlockedError as exc:  # a 403 on a route without content is about the key
            raise FatalError(f"not allowed (HTTP {raw.status}): {exc.message} Check "
                             f"{self._key_env}.", provider=self.name, status=raw.status) from None
        raise CheckUnavailable(f"unexpected answer from {path} (HTTP {raw.status})")


create = OpenRouterProvider.create
