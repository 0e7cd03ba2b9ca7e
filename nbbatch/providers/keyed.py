"""What every provider reached over HTTP with an API key shares: its client, its redactor,
its base URL, its options checked, fetching an image link, and closing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import httpx

from nbbatch.errors import OptionError, TransientError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import GeneratedImage, ImageLink, Provider
from nbbatch.providers.wire import get_bytes, image_from_bytes, new_client, redactor


class KeyedProvider(Provider):
    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]  # named in messages when the manifest names none

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str | None = None) -> None:
        self.name = name or config.name
        self.config = config
        self._api_key = api_key
        self._redact = redactor(api_key)
        self._base_url = (config.base_url or self.default_base_url).rstrip("/")
        self._key_env = config.api_key_env or self.default_key_env
        self._client = new_client(transport, config.timeout)

    @classmethod
    def create(cls, config: ProviderConfig, api_key: str | None,
               transport: httpx.AsyncBaseTransport | None) -> Self:
        """The registry's entry point: the key is there, the registry lists its variable."""
        assert api_key is not None
        return cls(config, api_key, transport=transport)

    def settled(self, settle: Callable[[Mapping[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """The provider's options through `settle`; a bad one is a usage error naming it."""
        try:
            return settle(self.config.options)
        except OptionError as exc:
            raise UsageError(f"providers.{self.config.name}.{exc}") from None

    async def download(self, link: ImageLink, max_bytes: int) -> GeneratedImage:
        """Fetch an image link once. No key goes with it: the link is pre-signed, and
        usually on another host. It was generated, so any failure is possibly billed."""
        ctx: dict[str, Any] = {"provider": self.name, "request_id": link.request_id,
                               "usage": dict(link.usage) or None}
        if urlsplit(link.url).scheme not in ("http", "https"):
            raise TransientError(f"the image URL in the response is not http(s): "
                                 f"{self._redact.message(link.url[:80])}",
                                 possibly_billed=True, **ctx)
        try:
            raw = await get_bytes(self._client, link.url, timeout=self.config.timeout,
                                  max_bytes=max_bytes, provider=self.name,
                                  redact=self._redact, follow_redirects=True)
        except TransientError as exc:
            raise TransientError(f"downloading the image failed: {exc.message}",
                                 possibly_billed=True, **ctx) from None
        if not 200 <= raw.status < 300:
            host = urlsplit(link.url).hostname or "?"
            raise TransientError(self._redact.message(
                f"downloading the image from {host} failed: HTTP {raw.status}"),
                possibly_billed=True, status=raw.status, **ctx)
        return image_from_bytes(raw.body, link.model, link.usage, link.request_id, link.text,
                                ctx, self._redact)

    async def aclose(self) -> None:
        await self._client.aclose()
