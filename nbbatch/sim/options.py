"""What the simulator can be told to do: latency, fault rates, quotas, outages, targets."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from nbbatch.catalog import ModelInfo

FAULTS = ("overloaded", "rate_limited", "internal", "timeout", "blocked", "no_image")
OUTCOMES = ("success", *FAULTS, "quota", "auth", "invalid", "not_found")
# Which API an outage, the quota or the faults hit.
TARGETS = ("all", "gemini", "openai", "stability", "openrouter")
JOB_OUTCOMES = ("succeeded", "failed", "expired")  # how a batch job ends when not cancelled
_FAULT_KEYS = {"503": "overloaded", "429": "rate_limited", "500": "internal"}


@dataclass
class SimulatorOptions:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, drawn uniformly per request
    overloaded: float = 0.0  # fault probabilities, 0..1
    rate_limited: float = 0.0
    retry_delay: float = 1.0  # server delay of per-minute 429s, seconds
    internal: float = 0.0
    timeout: float = 0.0
    hang: float = 600.0  # how long a timeout fault holds the request before its 504
    blocked: float = 0.0
    no_image: float = 0.0
    daily_quota: int | None = None  # successful images (per API) before per-day 429s
    outage: tuple[float, float] | None = None  # seconds since start: every request gets 503
    api_key: str | None = None  # None: any non-empty key is accepted
    seed: int | None = None
    scale: int = 4  # image pixels = real 1K size / scale
    outage_target: str = "all"  # one of TARGETS: which API the outage hits
    fault_target: str = "all"  # which API the random faults hit
    quota_target: str = "all"  # which API daily_quota limits
    metadata: bool = True  # False: no model-metadata routes, like many gateways
    image_bytes: int | None = None  # grow each image to about this many bytes (real sizes)
    # Batch APIs: a job runs this long (its requests finish evenly over it), then ends so.
    batch_duration: float = 2.0
    batch_outcome: str = "succeeded"
    batch_create_503: int = 0  # the next N create calls answer 503 and make no job
    batch_lose_create: int = 0  # the next N create calls make the job but lose the answer
    serve_retired: bool = False  # True: still serve models past their shutdown (tests)

    def __post_init__(self) -> None:
        # Lists arrive from JSON (/_sim/configure); keep tuples so options stay comparable.
        self.latency = _pair("latency", self.latency)
        if self.outage is not None:
            self.outage = _pair("outage", self.outage)
        for name in FAULTS:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"{name}: fault rate must be a number from 0 to 1, got {rate!r}")
        for name in ("retry_delay", "hang", "batch_duration"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a number of seconds >= 0 (and finite)")
        if self.daily_quota is not None and (
            not isinstance(self.daily_quota, int) or self.daily_quota < 0
        ):
            raise ValueError("daily_quota must be a whole number >= 0, or null")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string, or null for any key")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError("scale must be a whole number >= 1")
        for name in ("batch_create_503", "batch_lose_create"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0")
        if self.image_bytes is not None and (not isinstance(self.image_bytes, int)
                                             or not 0 <= self.image_bytes <= 64 << 20):
            raise ValueError("image_bytes must be a whole number of bytes up to 64 MB, or null")
        if self.batch_outcome not in JOB_OUTCOMES:
            raise ValueError(f"batch_outcome must be one of {', '.join(JOB_OUTCOMES)}, "
                             f"got {self.batch_outcome!r}")
        for name in ("outage_target", "fault_target", "quota_target"):
            if getattr(self, name) not in TARGETS:
                raise ValueError(f"{name} must be one of {', '.join(TARGETS)}, "
                                 f"got {getattr(self, name)!r}")


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [from, to], got {value!r}") from None
    if not 0 <= low <= high:
        raise ValueError(f"{name} must satisfy 0 <= from <= to, got {value!r}")
    return low, high


def parse_faults(spec: str) -> dict[str, float]:
    """Parse "503=0.3,429=0.1,timeout=0.01" into {"overloaded": 0.3, "rate_limited": 0.1, ...}."""
    rates: dict[str, float] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        name = _FAULT_KEYS.get(key, key)
        if not sep or name not in FAULTS:
            raise ValueError(
                f"bad fault {item.strip()!r}: use KEY=RATE with KEY one of 503, 429, 500, "
                "timeout, blocked, no_image (or overloaded, rate_limited, internal)"
            )
        if name in rates:
            raise ValueError(f"fault {key!r} is given twice")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"fault {key!r}: rate {value!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault {key!r}: rate must be from 0 to 1, got {value}")
        rates[name] = rate
    return rates


def retired(info: ModelInfo, options: SimulatorOptions,
            today: datetime.date | None = None) -> bool:
    """Whether the simulator answers `info`'s model as gone: past its shutdown date, as the
    real API does once a model is shut down (404 as for an unknown model)."""
    if options.serve_retired or info.shutdown is None:
        return False
    return info.shutdown <= (today or datetime.date.today())
