"""The OpenAI Images API: POST {base_url}/images/generations, or /images/edits with references.

One request per call and no retries: pacing, retry and failover live in the engine. What is
sent is built in openai_requests.py; what comes back is read in openai_answers.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from nbbatch.errors import InvalidRequestError, TransientError
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest
from nbbatch.providers.keyed import KeyedProvider
from nbbatch.providers.openai_answers import DEFAULT_KEY_ENV, ImageLink, check_answer, classify
from nbbatch.providers.openai_requests import (
    build_edit_form,
    build_generation_body,
    check_options,
    settle_options,
)
from nbbatch.providers.wire import (
    RawResponse,
    get_bytes,
    post_json,
    post_multipart,
)

__all__ = ["OpenAIProvider", "check_options", "classify", "create"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a 1536x1024 PNG is a few MB in base64


class OpenAIProvider(KeyedProvider):
    default_base_url = DEFAULT_BASE_URL
    default_key_env = DEFAULT_KEY_ENV

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str | None = None) -> None:
        super().__init__(config, api_key, transport=transport, name=name)
        self.options = self.settled(settle_options)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if "organization" in self.options:
            self._headers["OpenAI-Organization"] = self.options["organization"]
        if "project" in self.options:
            self._headers["OpenAI-Project"] = self.options["project"]

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
                     key_env=self._key_env)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        try:
            form = build_edit_form(request, self.options) if request.references else None
            body = None if form else build_generation_body(request, self.options)
        except InvalidRequestError as exc:  # refused before sending: nothing was billed
            raise InvalidRequestError(exc.message, provider=self.name) from None
        raw = await self._post(form, body)
        result = classify(raw.status, raw.headers, raw.body, provider=self.name,
                          redact=self._redact, model=request.model,
                          key_env=self._key_env)
        if isinstance(result, ImageLink):
            return await self.download(result, MAX_RESPONSE_BYTES)
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


create = OpenAIProvider.create
