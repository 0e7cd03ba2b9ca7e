"""What every provider implements: one image request in, image bytes or a classified error out.

Pacing, retries, failover and the ledger live outside providers, once, in the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReferenceImage:
    mime_type: str
    data: bytes


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    model: str
    aspect_ratio: str | None = None
    image_size: str | None = None  # "1K" | "2K" | "4K" (| "512" on some models)
    references: tuple[ReferenceImage, ...] = ()


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime_type: str  # as declared by the provider; storage checks it against the bytes
    model: str  # the model that answered (modelVersion when the provider reports it)
    usage: Mapping[str, Any] = field(default_factory=dict)  # provider's token/usage report
    request_id: str | None = None
    text: str | None = None  # any non-thought text that came with the image


@dataclass(frozen=True)
class ImageLink:
    """A success whose image must be downloaded: a URL answer (dall-e's, valid 60 minutes;
    some gateways'), with what came with it."""

    url: str
    model: str
    usage: Mapping[str, Any]
    request_id: str | None
    text: str | None


class CheckUnavailable(Exception):
    """The provider's metadata route cannot say whether a key or model is good."""


class Provider(ABC):
    """One configured API endpoint. Raises a nbbatch.errors.ProviderError subclass on failure."""

    name: str

    @abstractmethod
    async def generate(self, request: ImageRequest) -> GeneratedImage: ...

    async def check(self, model: str) -> None:
        """Pre-flight: ask the provider's free metadata route whether the key is accepted and
        `model` exists. Returns when both are; raises FatalError (key rejected, no
        permission), UnknownModelError (no such model) or QuotaExhaustedError as an answer
        to a generation request would; raises CheckUnavailable when the route gives no
        useful answer (a gateway without it: 404, 405, 501, HTML, a connection error)."""
        raise CheckUnavailable(f"{self.name} has no metadata route")

    async def aclose(self) -> None:
        """Release connections; providers without any keep the default."""
        return None
