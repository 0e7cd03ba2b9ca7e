"""The OpenAI Images API: POST {base_url}/images/generations, or /images/edits with references.

One request per call and no retries: pacing, retry and failover live in the engine. What is
sent is built in openai_requests.py; what comes back is read in openai_answers.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from nbbatch.errors import InvalidRequestError, OptionError, TransientError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest, Provider
from nbbatch.providers.openai_answers import DEFAULT_KEY_ENV, ImageURL, check_answer, classify
from nbbatch.providers.openai_requests import (
    build_edit_form,
    build_generation_body,
    check_options,
    settle_options,
)
from nbbatch.providers.wire import (
    RawResponse,
    get_bytes,
    image_from_bytes,
    new_client,
    post_json,
    post_multipart,
    redactor,
)

__all__ = ["OpenAIProvider", "check_options", "classify", "create"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a 1536x1024 PNG is a few MB in base64


def create(config: ProviderConfig, api_key: str | None,
           transport: httpx.AsyncBaseTransport | None) -> OpenAIProvider:
    assert api_key is not None  # the registry lists OPENAI_API_KEY
    return OpenAIProvider(config, api_key, transport=transport)


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
        try:
            self.options = settle_options(config.options)
        except OptionError as exc:
            raise UsageError(f"providers.{config.name}.{exc}") from None
        self._api_key = api_key
        self._redact = redactor(api_key)
        self._base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if "organization" in self.options:
            self._headers["OpenAI-Organization"] = self.options["organization"]
        if "project" in self.options:
            self._headers["OpenAI-Project"] = self.options["project"]
        self._client = new_client(transport, config.timeout)

    async def check(self, model: str) -> None:
        try:
            raw = await get_bytes(self._client, f"{self._base_url}/models/{quote(model, safe='')}",
                                  headers=self._headers, timeout=min(self.config.timeout, 30.0),
                                  max_bytes=1024 * 1024, provider=self.name,
                                  redact=self._redact)
        except TransientError as exc:
            raise CheckUnavailable(exc.message) from None
        check_answer(raw.status, raw.headers, raw.body, provider=self.name,
                     redact=self._redact, model=model,
                     key_env=self.config.api_key_env or DEFAULT_KEY_ENV)

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
                                 f"{self._redact.message(link.url[:80])}",
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
        return image_from_bytes(raw.body, link.model, link.usage, link.request_id, link.text, ctx,
                      self._redact)

    async def aclose(self) -> None:
        await self._client.aclose()


