"""The Gemini API (AI Studio key): POST /v1beta/models/{model}:generateContent.

One request per call and no retries: pacing, retry and failover live in the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from nbbatch.errors import TransientError
from nbbatch.model import ProviderConfig
from nbbatch.providers import google
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest
from nbbatch.providers.keyed import KeyedProvider
from nbbatch.providers.wire import get_bytes, post_json

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
MAX_RESPONSE_BYTES = 256 * 1024 * 1024  # a 4K image is ~20 MB in base64: far larger is wrong
CHECK_TIMEOUT = 30.0  # seconds for a metadata request: it answers at once when it answers
CHECK_BYTES = 1024 * 1024


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return google.check_modalities(options)


class GeminiProvider(KeyedProvider):
    default_base_url = DEFAULT_BASE_URL
    default_key_env = "GEMINI_API_KEY (or GOOGLE_API_KEY)"

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str | None = None) -> None:
        super().__init__(config, api_key, transport=transport, name=name)
        self._modalities = config.options.get("response_modalities") or google.MODALITIES

    def model_url(self, model: str) -> str:
        model = model.removeprefix("models/")  # people paste ids from ListModels
        return f"{self._base_url}/v1beta/models/{quote(model, safe='')}"

    def url_for(self, model: str) -> str:
        return f"{self.model_url(model)}:generateContent"

    async def check(self, model: str) -> None:
        try:
            raw = await get_bytes(self._client, self.model_url(model),
                                  headers={"x-goog-api-key": self._api_key},
                                  timeout=min(self.config.timeout, CHECK_TIMEOUT),
                                  max_bytes=CHECK_BYTES, provider=self.name, redact=self._redact)
        except TransientError as exc:  # no connection: the first generation request will tell
            raise CheckUnavailable(exc.message) from None
        google.check_answer(raw.status, raw.headers, raw.body, provider=self.name,
                            redact=self._redact, model=model, key_env=self._key_env)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        raw = await post_json(
            self._client,
            self.url_for(request.model),
            json=google.build_body(request, self._modalities),
            headers={"x-goog-api-key": self._api_key, "Content-Type": "application/json"},
            timeout=self.config.timeout,
            max_bytes=MAX_RESPONSE_BYTES,
            provider=self.name,
            redact=self._redact,
        )
        return google.classify(
            raw.status,
            raw.headers,
            raw.body,
            provider=self.name,
            redact=self._redact,
            model=request.model,
            key_env=self._key_env,
        )


create = GeminiProvider.create
