"""The value types every part of nbbatch shares: what a manifest says, frozen.

Plain dataclasses with no I/O. The bounds in `Annotated[...]` are checked once, where a
manifest is validated (manifest/sections.py reads them); everything after that can trust them.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from annotated_types import Ge, Gt, Le, MinLen

from nbbatch.text import shown

MAX_CONCURRENCY = 256  # requests in flight per provider; more only hurts an overloaded API
MAX_BATCH_REQUESTS = 50_000  # the most either batch API takes in one job
Mode = Literal["online", "batch"]


@dataclass(frozen=True)
class Interval:
    """Seconds between request starts on one provider, drawn uniformly from [low, high]."""

    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g}-{self.high:g}"


_INTERVAL_FORMS = 'seconds as a number (7), a range "5-10" or a list [5, 10]'
_INTERVAL_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:-\s*(\d+(?:\.\d*)?|\.\d+)\s*)?")


def parse_interval(value: Any) -> Interval:
    """7, 7.5, "7", "5-10" or [5, 10] -> Interval. ValueError naming the accepted forms."""
    number = (int, float)
    try:
        if isinstance(value, str) and (m := _INTERVAL_RE.fullmatch(value)):
            low, high = float(m[1]), float(m[2] or m[1])
        elif (isinstance(value, list | tuple) and len(value) == 2
              and all(isinstance(v, number) and not isinstance(v, bool) for v in value)):
            low, high = float(value[0]), float(value[1])
        elif isinstance(value, number) and not isinstance(value, bool):
            low = high = float(value)
        else:
            raise ValueError(f"expected {_INTERVAL_FORMS}, got {shown(value)}")
    except OverflowError:
        raise ValueError(f"expected {_INTERVAL_FORMS}, got a number too large") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"expected {_INTERVAL_FORMS}, got {shown(value)}")
    if low < 0:
        raise ValueError(f"seconds must not be negative, got {shown(value)}")
    if low > high:
        raise ValueError(f"the range {low:g}-{high:g} is reversed: put the smaller number first")
    return Interval(low, high)


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    api_key_env: str | None = None  # None: the provider's default variable(s)
    base_url: str | None = None  # None: the provider's public endpoint
    timeout: Annotated[float, Gt(0)] = 180.0  # seconds, total, for one request
    model: str | None = None  # model this provider uses when it serves as a backup
    options: Mapping[str, Any] = field(default_factory=dict)  # provider-specific extras


@dataclass(frozen=True)
class PacingConfig:
    interval: Interval = Interval(5.0, 10.0)
    concurrency: Annotated[int, Ge(1), Le(MAX_CONCURRENCY)] = 4


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: Annotated[int, Ge(1), Le(1000)] = 6  # per image and run, all causes together
    initial_delay: Annotated[float, Ge(0)] = 2.0
    max_delay: Annotated[float, Ge(0)] = 120.0


@dataclass(frozen=True)
class FailoverConfig:
    order: Annotated[tuple[str, ...], MinLen(1)]
    trip_after: Annotated[int, Ge(1)] = 3
    probe_every: Annotated[float, Gt(0)] = 300.0
    # true: an image a backup would make in another shape (ratio or size) waits for the
    # primary instead of being made by that backup
    same_shape: bool = False


@dataclass(frozen=True)
class BatchConfig:
    """Batch mode: how often live jobs are polled, and how many images one job may hold."""

    poll_every: Annotated[float, Gt(0)] = 60.0  # seconds; fractions too (tests poll fast)
    max_requests: Annotated[int, Ge(1), Le(MAX_BATCH_REQUESTS)] = 1000


@dataclass(frozen=True, init=False)
class Item:
    """One manifest entry with defaults applied. `count` images are made from it."""

    id: str
    prompt: str
    provider: str
    model: str
    aspect_ratio: str | None
    image_size: str | None
    count: int
    references: tuple[Path, ...]  # absolute paths
    reference_digests: tuple[str, ...]  # sha256 hex of each reference file's bytes
    line: int | None  # where the entry starts in its file
    # The prompt as written, when normalising its line breaks or Unicode changed it, and the
    # id derived from that: what a ledger written before normalisation knows the image by.
    legacy_prompt: str | None
    legacy_id: str | None
    # Hash of everything that shapes the image: a change means it is made again.
    fingerprint: str = field(init=False, repr=False, compare=False)

    def __init__(self, id: str, prompt: str, provider: str, model: str,
                 aspect_ratio: str | None = None, image_size: str | None = None,
                 count: int = 1, references: tuple[Path, ...] = (),
                 reference_digests: tuple[str, ...] = (), line: int | None = None,
                 legacy_prompt: str | None = None, legacy_id: str | None = None) -> None:
        # Frozen all the same, but set straight into the instance's dict: the __init__ a
        # frozen dataclass generates costs a call per field, and loading 100,000 prompts
        # makes 100,000 items (it was a fifth of the load). In field order, so that every
        # item's dict shares one table of keys. A test holds this to the fields.
        d = vars(self)
        d["id"], d["prompt"], d["provider"], d["model"] = id, prompt, provider, model
        d["aspect_ratio"], d["image_size"], d["count"] = aspect_ratio, image_size, count
        d["references"], d["reference_digests"], d["line"] = references, reference_digests, line
        d["legacy_prompt"], d["legacy_id"] = legacy_prompt, legacy_id
        d["fingerprint"] = self._fingerprint(prompt)

    @property
    def legacy_fingerprint(self) -> str | None:
        """The fingerprint a ledger written before prompts were normalised holds, if other."""
        return self._fingerprint(self.legacy_prompt) if self.legacy_prompt is not None else None

    def _fingerprint(self, prompt: str) -> str:
        # The shape as compact JSON, non-ASCII kept: every ledger's fingerprints are this
        # exact text hashed (orjson writes the bytes json.dumps(ensure_ascii=False,
        # separators=(",", ":")) wrote, twenty times faster; a test holds them equal).
        shape = [prompt, self.provider, self.model, self.aspect_ratio, self.image_size,
                 self.reference_digests]
        return hashlib.sha256(orjson.dumps(shape)).hexdigest()

    def label(self, index: int) -> str:
        """How one of its images is named in messages: `id`, or `id#2` when there are several."""
        return self.id if self.count == 1 else f"{self.id}#{index}"




@dataclass(frozen=True)
class Manifest:
    path: Path  # absolute
    output: Path | None  # absolute (resolved against the manifest's folder), or None
    providers: Mapping[str, ProviderConfig]
    pacing: PacingConfig
    retry: RetryConfig
    failover: FailoverConfig | None
    items: tuple[Item, ...]
    mode: Mode = "online"
    batch: BatchConfig = BatchConfig()

    @property
    def image_count(self) -> int:
        return sum(item.count for item in self.items)

    def provider(self, name: str) -> ProviderConfig:
        return self.providers.get(name) or ProviderConfig(name)
