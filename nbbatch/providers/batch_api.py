"""What the Gemini and OpenAI batch clients share: one keyed HTTP client, and how an answer of
a batch API is read - errors classified as online, job documents parsed with whatever text
the server sent redacted, the names the server hands back checked before they go in a URL.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from nbbatch.errors import ProviderError, TransientError
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import BatchClient, BatchStatus
from nbbatch.providers.batch_lines import checked_name
from nbbatch.providers.wire import (
    RawResponse,
    get_bytes,
    new_client,
    parse_object,
    post_json,
    redactor,
)

SMALL_ANSWER_BYTES = 1 << 20  # a create, cancel or upload answer: one small JSON object
TRANSFER_TIMEOUT = 3600.0  # seconds for one upload of a requests file
LIST_PAGES = 50  # pages of a job list searched for a display name


class BatchApiClient(BatchClient):
    parse_job: Callable[[dict[str, Any]], BatchStatus]  # the API's job document, read

    def __init__(self, config: ProviderConfig, api_key: str, *, base_url: str,
                 headers: dict[str, str], key_env: str,
                 transport: httpx.AsyncBaseTransport | None, name: str | None = None) -> None:
        self.name = name or config.name
        self.config = config
        self._redact = redactor(api_key)
        self._base = base_url.rstrip("/")
        self._headers = headers
        self._client = new_client(transport, config.timeout)
        self._key_env = key_env

    @abstractmethod
    def _classify(self, raw: RawResponse, model: str) -> None:
        """Raise the ProviderError a non-2xx answer means (as an online answer would)."""

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests ----------------------------------------------------------------------

    async def _post(self, url: str, body: object, *, timeout: float | None = None) -> RawResponse:
        return await post_json(
            self._client, url, json=body,
            headers={**self._headers, "Content-Type": "application/json"},
            timeout=timeout or self.config.timeout, max_bytes=SMALL_ANSWER_BYTES,
            provider=self.name, redact=self._redact)

    async def _get(self, url: str, max_bytes: int) -> RawResponse:
        return await get_bytes(self._client, url, headers=self._headers,
                               timeout=self.config.timeout, max_bytes=max_bytes,
                               provider=self.name, redact=self._redact)

    async def _cancel_at(self, url: str) -> None:
        raw = await self._post(url, {})
        if raw.status != 404:  # a job already gone needs no cancelling
            self._check(raw)

    # -- answers -----------------------------------------------------------------------

    def _error(self, raw: RawResponse, model: str = "") -> ProviderError:
        try:
            self._classify(raw, model)
        except ProviderError as exc:
            return exc
        return TransientError(f"HTTP {raw.status} without an error", provider=self.name)

    def _check(self, raw: RawResponse, *, model: str = "") -> dict[str, Any]:
        """The JSON object of a 2xx answer; the classified ProviderError otherwise."""
        if not 200 <= raw.status < 300:
            raise self._error(raw, model)
        doc = parse_object(raw.body)
        if doc is None:
            raise TransientError("the batch API answered with something other than JSON",
                                 provider=self.name, status=raw.status, possibly_billed=True)
        return doc

    def _job(self, doc: dict[str, Any]) -> BatchStatus:
        try:
            status = self.parse_job(doc)
        except ValueError as exc:
            raise TransientError(self._redact(str(exc)), provider=self.name,
                                 possibly_billed=True) from None
        # What the server says is shown and stored: an echoed key must not come along.
        return replace(status, state=self._redact(status.state),
                       error=self._redact.message(status.error) if status.error else None)

    def _name(self, value: Any, prefix: str, what: str) -> str:
        """A name the server gave (a file, a job), safe to put in the next URL."""
        try:
            return checked_name(value, prefix, what)
        except ValueError as exc:
            raise TransientError(self._redact(str(exc)), provider=self.name) from None
