"""What every provider implements: one image request in, image bytes or a classified error out;
and, for providers with a batch API, a BatchClient: jobs of many requests, results streamed.

Pacing, retries, failover and the ledger live outside providers, once, in the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nbbatch.errors import ProviderError


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
    # (width, height) once the bytes were checked: read from them, so not compared
    pixels: tuple[int, int] | None = field(default=None, compare=False)


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


# -- batch mode -----------------------------------------------------------------------------


class JobPhase(StrEnum):
    """Where a batch job stands, whatever the provider calls its states."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self not in (JobPhase.PENDING, JobPhase.RUNNING)


@dataclass(frozen=True)
class BatchItem:
    """One request of a job: the key its result comes back under, and what it asks for."""

    key: str
    request: ImageRequest


@dataclass(frozen=True)
class BatchStatus:
    """A job as the provider last described it. `state` is the provider's own word for it;
    `results` says where the results are, in the provider's terms (for `results()`)."""

    name: str
    display_name: str | None
    state: str
    phase: JobPhase
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    error: str | None = None
    results: Any = None


# A result: the request's key (or its position, for answers that carry no key) and the
# image, or the ProviderError the answer means, classified exactly as online.
BatchResult = tuple[str | int, GeneratedImage | ProviderError]


class BatchClient(ABC):
    """One provider's batch API. Methods raise ProviderError subclasses, like generate()."""

    name: str

    @abstractmethod
    async def prepare(self, display_name: str, model: str,
                      items: Iterable[BatchItem]) -> str | None:
        """Upload what the create call needs, if anything: the input file's name, or None
        when the requests go inline. `items` may be iterated more than once."""

    @abstractmethod
    async def create(self, display_name: str, model: str, items: Iterable[BatchItem],
                     input_file: str | None) -> BatchStatus: ...

    @abstractmethod
    async def get(self, name: str) -> BatchStatus: ...

    @abstractmethod
    async def find(self, display_name: str) -> BatchStatus | None:
        """The job created under `display_name`, looked up in the provider's job list."""

    @abstractmethod
    async def cancel(self, name: str) -> None: ...

    @abstractmethod
    def results(self, status: BatchStatus) -> AsyncIterator[BatchResult]:
        """Every result a finished job holds, streamed (a results file may be gigabytes)."""

    async def aclose(self) -> None:
        return None
