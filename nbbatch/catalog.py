"""Known image models: aspect ratios, sizes, price per image, shutdown dates.

Figures from shared/reference (late 2026). Unknown models are allowed (gateways, new releases):
they get no validation and no price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
FLASH_31_RATIOS = (*GEMINI_RATIOS, "1:4", "4:1", "1:8", "8:1")
# OpenAI takes sizes, not ratios: providers/openai.py maps each of these to the nearest size
# the model has (1024x1024, 1536x1024, 1024x1536 for GPT image models).
OPENAI_RATIOS = GEMINI_RATIOS
DALL_E_SHUTDOWN = date(2026, 5, 12)  # reported, 3rd-party (openai reference §1.6)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    provider: str
    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]
    price_per_image: dict[str, float]  # image size -> USD; "*" for any size
    shutdown: date | None = None
    usd_per_image_token: float | None = None  # output image tokens, when billed per token

    def price(self, image_size: str | None) -> float:
        size = image_size or self.image_sizes[0]
        return self.price_per_image.get(size, self.price_per_image.get("*", 0.0))


_MODELS = [
    # Gemini bills image output tokens: $120 / $60 / $30 per million (reference §7).
    ModelInfo("gemini-3-pro-image", "gemini", GEMINI_RATIOS, ("1K", "2K", "4K"),
              {"1K": 0.134, "2K": 0.134, "4K": 0.24}, usd_per_image_token=120e-6),
    ModelInfo("gemini-3-pro-image-preview", "gemini", GEMINI_RATIOS, ("1K", "2K", "4K"),
              {"1K": 0.134, "2K": 0.134, "4K": 0.24}, shutdown=date(2026, 6, 25),
              usd_per_image_token=120e-6),
    ModelInfo("gemini-3.1-flash-image", "gemini", FLASH_31_RATIOS, ("1K", "512", "2K", "4K"),
              {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151}, usd_per_image_token=60e-6),
    ModelInfo("gemini-3.1-flash-image-preview", "gemini", FLASH_31_RATIOS,
              ("1K", "512", "2K", "4K"), {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
              shutdown=date(2026, 6, 25), usd_per_image_token=60e-6),
    ModelInfo("gemini-2.5-flash-image", "gemini", GEMINI_RATIOS, ("1K",), {"*": 0.039},
              shutdown=date(2026, 10, 2), usd_per_image_token=30e-6),
    # OpenAI: one output size class ("1K"); the price is medium quality at 1024x1024
    # (reference §1.5; gpt-image-1.5 from third-party mirrors of OpenAI's price list).
    # Portrait/landscape and high quality cost more; billing is per token in fact.
    ModelInfo("gpt-image-1", "openai", OPENAI_RATIOS, ("1K",), {"*": 0.042},
              usd_per_image_token=40e-6),
    ModelInfo("gpt-image-1-mini", "openai", OPENAI_RATIOS, ("1K",), {"*": 0.011},
              usd_per_image_token=8e-6),
    ModelInfo("gpt-image-1.5", "openai", OPENAI_RATIOS, ("1K",), {"*": 0.034}),
    ModelInfo("dall-e-3", "openai", OPENAI_RATIOS, ("1K",), {"*": 0.04},
              shutdown=DALL_E_SHUTDOWN),
    ModelInfo("dall-e-2", "openai", ("1:1",), ("1K",), {"*": 0.02}, shutdown=DALL_E_SHUTDOWN),
]
MODELS: dict[str, ModelInfo] = {m.id: m for m in _MODELS}

DEFAULT_MODEL = {
    "gemini": "gemini-3-pro-image",
    "vertex": "gemini-3-pro-image",
    "simulator": "gemini-3-pro-image",
    "openai": "gpt-image-1",
}


def lookup(model: str) -> ModelInfo | None:
    return MODELS.get(model)


FREE_PROVIDERS = frozenset({"simulator"})


def price(model: str, image_size: str | None, provider: str | None = None) -> float:
    """Estimated USD for one image; 0.0 for unknown models and for the simulator."""
    if provider in FREE_PROVIDERS:
        return 0.0
    info = MODELS.get(model)
    return info.price(image_size) if info else 0.0


def image_cost(model: str, image_size: str | None, provider: str | None,
               usage: Mapping[str, Any] | None) -> float:
    """What one image cost: the image tokens the provider reported times the model's token
    price when both are known, else the catalog's price per image."""
    if provider in FREE_PROVIDERS:
        return 0.0
    info = MODELS.get(model)
    tokens = image_output_tokens(usage or {})
    if info and info.usd_per_image_token and tokens:
        return tokens * info.usd_per_image_token
    return price(model, image_size, provider)


def image_output_tokens(usage: Mapping[str, Any]) -> int | None:
    """Image tokens in a Gemini `usageMetadata` or an OpenAI `usage` report."""
    details = usage.get("candidatesTokensDetails")  # Gemini
    if isinstance(details, list):
        tokens = sum(d.get("tokenCount", 0) for d in details
                     if isinstance(d, dict) and d.get("modality") == "IMAGE")
        if tokens:
            return int(tokens)
    output = usage.get("output_tokens_details")  # OpenAI
    if isinstance(output, dict) and isinstance(output.get("image_tokens"), int):
        return output["image_tokens"]
    if isinstance(usage.get("output_tokens"), int):
        return usage["output_tokens"]
    return None
