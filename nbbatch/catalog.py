"""Known image models: aspect ratios, sizes, prices, shutdown dates — one entry per model.

Prices are the providers' published list prices of late 2026 (OpenAI's per quality and pixel
size; Gemini's per image size; Stability's one flat price per model; batch jobs at half
price). Unknown models are allowed (gateways, new releases): they get no validation and no
price.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
FLASH_31_RATIOS = (*GEMINI_RATIOS, "1:4", "4:1", "1:8", "8:1")
# OpenAI takes pixel sizes, not ratios: each ratio is sent as the model's nearest size.
OPENAI_RATIOS = GEMINI_RATIOS
GPT_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
# Stability's generate endpoints take exactly these; providers/stability.py maps any other
# ratio to the nearest of them when Stability stands in as a backup.
STABILITY_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
DALL_E_3_SIZES = ((1024, 1024), (1792, 1024), (1024, 1792))
DALL_E_SHUTDOWN = date(2026, 5, 12)  # reported by third parties, not by OpenAI
BATCH_DISCOUNT = 0.5  # the Gemini and OpenAI batch APIs charge half the online price
QUALITIES = ("low", "medium", "high")

# "models/…" and "publishers/…" paths are Google's resource names, not OpenRouter vendors.
_NOT_VENDORS = ("models", "publishers")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    family: str  # "gemini", "openai", "stability", "openrouter": who serves it is in the registry
    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]  # first: what the model makes when no size is asked
    # USD per image, online. Gemini: by image size ("*": any). OpenAI: "quality/WxH".
    prices: Mapping[str, float]
    pixel_sizes: tuple[tuple[int, int], ...] = ()  # OpenAI: the sizes the API takes
    shutdown: date | None = None
    usd_per_image_token: float | None = None  # output image tokens, when billed per token
    replacements: tuple[str, ...] = ()  # what to use once it is shut down


def _gpt_prices(low: tuple[float, float], medium: tuple[float, float],
                high: tuple[float, float]) -> dict[str, float]:
    """(square, portrait-or-landscape) prices per quality -> "quality/WxH" keys."""
    out = {}
    for quality, (square, oblong) in zip(QUALITIES, (low, medium, high), strict=True):
        out[f"{quality}/1024x1024"] = square
        out[f"{quality}/1536x1024"] = out[f"{quality}/1024x1536"] = oblong
    return out


_PRO = {"1K": 0.134, "2K": 0.134, "4K": 0.24}
_FLASH = {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151}
_MODELS = [
    # Gemini bills image output tokens: $120 / $60 / $30 per million.
    ModelInfo("gemini-3-pro-image", "gemini", GEMINI_RATIOS, ("1K", "2K", "4K"), _PRO,
              usd_per_image_token=120e-6),
    ModelInfo("gemini-3-pro-image-preview", "gemini", GEMINI_RATIOS, ("1K", "2K", "4K"), _PRO,
              shutdown=date(2026, 6, 25), usd_per_image_token=120e-6,
              replacements=("gemini-3-pro-image",)),
    ModelInfo("gemini-3.1-flash-image", "gemini", FLASH_31_RATIOS, ("1K", "512", "2K", "4K"),
              _FLASH, usd_per_image_token=60e-6),
    ModelInfo("gemini-3.1-flash-image-preview", "gemini", FLASH_31_RATIOS,
              ("1K", "512", "2K", "4K"), _FLASH, shutdown=date(2026, 6, 25),
              usd_per_image_token=60e-6, replacements=("gemini-3.1-flash-image",)),
    ModelInfo("gemini-2.5-flash-image", "gemini", GEMINI_RATIOS, ("1K",), {"*": 0.039},
              shutdown=date(2026, 10, 2), usd_per_image_token=30e-6,
              replacements=("gemini-3.1-flash-image",)),
    # OpenAI bills output tokens in fact; these are the per-image figures they come to.
    ModelInfo("gpt-image-1", "openai", OPENAI_RATIOS, ("1K",),
              _gpt_prices((0.011, 0.016), (0.042, 0.063), (0.167, 0.25)), GPT_SIZES,
              usd_per_image_token=40e-6),
    ModelInfo("gpt-image-1-mini", "openai", OPENAI_RATIOS, ("1K",),
              _gpt_prices((0.005, 0.006), (0.011, 0.015), (0.036, 0.052)), GPT_SIZES,
              usd_per_image_token=8e-6),
    # gpt-image-1.5: only the medium square price is published (third-party mirrors).
    ModelInfo("gpt-image-1.5", "openai", OPENAI_RATIOS, ("1K",), {"*": 0.034}, GPT_SIZES),
    ModelInfo("dall-e-3", "openai", OPENAI_RATIOS, ("1K",),
              {"standard/1024x1024": 0.04, "standard/1792x1024": 0.08,
               "standard/1024x1792": 0.08, "hd/1024x1024": 0.08, "hd/1792x1024": 0.12,
               "hd/1024x1792": 0.12}, DALL_E_3_SIZES, shutdown=DALL_E_SHUTDOWN,
              replacements=("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")),
    ModelInfo("dall-e-2", "openai", ("1:1",), ("1K",), {"*": 0.02}, ((1024, 1024),),
              shutdown=DALL_E_SHUTDOWN, replacements=("gpt-image-1-mini", "gpt-image-1")),
    # Stability: a flat rate per image in credits, 1 credit = $0.01 (Core 3, Ultra 8,
    # SD3.5 Large 6.5, Large Turbo 4, Medium 3.5); one output size of about 1-1.5 MP.
    ModelInfo("stable-image-core", "stability", STABILITY_RATIOS, ("1K",), {"*": 0.03}),
    ModelInfo("stable-image-ultra", "stability", STABILITY_RATIOS, ("1K",), {"*": 0.08}),
    ModelInfo("sd3.5-large", "stability", STABILITY_RATIOS, ("1K",), {"*": 0.065}),
    ModelInfo("sd3.5-large-turbo", "stability", STABILITY_RATIOS, ("1K",), {"*": 0.04}),
    ModelInfo("sd3.5-medium", "stability", STABILITY_RATIOS, ("1K",), {"*": 0.035}),
    # OpenRouter passes the upstream price through; these are the upstream per-image prices,
    # for plans and budgets. A run records the cost OpenRouter reports for each image instead.
    ModelInfo("google/gemini-3-pro-image-preview", "openrouter", GEMINI_RATIOS,
              ("1K", "2K", "4K"), _PRO),
    ModelInfo("google/gemini-3.1-flash-image-preview", "openrouter", FLASH_31_RATIOS,
              ("1K", "512", "2K", "4K"), _FLASH),
    ModelInfo("google/gemini-2.5-flash-image", "openrouter", GEMINI_RATIOS, ("1K",),
              {"*": 0.039}),
    ModelInfo("openai/gpt-image-1", "openrouter", OPENAI_RATIOS, ("1K",), {"*": 0.042}),
]
MODELS: dict[str, ModelInfo] = {m.id: m for m in _MODELS}


def lookup(model: str) -> ModelInfo | None:
    return MODELS.get(model)


def family(model: str) -> str | None:
    """The model family a model belongs to, when nbbatch can tell: the catalog's, else by
    the shape of its name."""
    info = MODELS.get(model)
    if info is not None:
        return info.family
    if model.startswith(("gpt-image", "dall-e")):
        return "openai"
    if model.startswith(("stable-image-", "sd3")):
        return "stability"
    vendor, slash, name = model.partition("/")
    if slash and vendor and name and "/" not in name and vendor not in _NOT_VENDORS:
        return "openrouter"  # an OpenRouter id, vendor/model
    return None


def retirement_note(model: str) -> str | None:
    """For a model with an announced shutdown: when, and what to use instead."""
    info = MODELS.get(model)
    if info is None or info.shutdown is None:
        return None
    instead = f"; use {' or '.join(info.replacements)}" if info.replacements else ""
    return f"{model} is reported shut down on {info.shutdown:%Y-%m-%d}{instead}"


def pixel_size(model: str, aspect_ratio: str | None) -> str:
    """The OpenAI `size` for a ratio: the model's size nearest to it in log ratio, ties to the
    square one; "auto" when no ratio is asked (dall-e has no "auto": 1024x1024).
    ValueError for a ratio that is not W:H."""
    info = MODELS.get(model)
    sizes = info.pixel_sizes if info and info.pixel_sizes else GPT_SIZES
    if aspect_ratio is None:
        return "1024x1024" if model.startswith("dall-e") else "auto"
    wanted = ratio_log(aspect_ratio)
    width, height = min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - wanted))
    return f"{width}x{height}"


def ratio_log(aspect_ratio: str) -> float:
    """log(W/H) of a "W:H" ratio: nearness in log scale treats 2:1 and 1:2 alike.
    ValueError for a ratio that is not W:H."""
    match = _RATIO.match(aspect_ratio)
    if not match or float(match.group(1)) <= 0 or float(match.group(2)) <= 0:
        raise ValueError(f"aspect ratio {aspect_ratio!r} must look like 16:9")
    return math.log(float(match.group(1)) / float(match.group(2)))


SIZE_PIXELS = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}  # the long side, roughly


def made_pixels(model: str, aspect_ratio: str | None) -> tuple[int, int] | None:
    """The pixel size a model that takes pixel sizes (OpenAI's) is sent for a ratio, or None
    for models that take the ratio and size as asked (Gemini's) or when the API picks."""
    info = MODELS.get(model)
    if family(model) != "openai" or (info is not None and not info.pixel_sizes):
        return None
    try:
        size = pixel_size(model, aspect_ratio)
    except ValueError:
        return None
    if size == "auto":
        return None
    width, height = (int(n) for n in size.split("x"))
    return width, height


def shape_change(model: str, aspect_ratio: str | None, image_size: str | None) -> str | None:
    """How the image `model` makes differs from the ratio and size asked, in words
    ("makes 1536x1024 (3:2)"), or None when it makes what was asked."""
    made = made_pixels(model, aspect_ratio)
    if made is None:
        return None
    width, height = made
    ratio_changed = False
    if aspect_ratio and (match := _RATIO.match(aspect_ratio)):
        asked = math.log(float(match.group(1)) / float(match.group(2)))
        ratio_changed = abs(asked - math.log(width / height)) > 0.01
    smaller = image_size in SIZE_PIXELS and max(made) < 0.9 * SIZE_PIXELS[image_size]
    if not (ratio_changed or smaller):
        return None
    divisor = math.gcd(width, height)
    return f"makes {width}x{height} ({width // divisor}:{height // divisor})"


def price(
    model: str,
    *,
    image_size: str | None = None,
    aspect_ratio: str | None = None,
    quality: str | None = None,
    batch: bool = False,
    dearest: bool = False,
) -> float:
    """List price of one image in USD; 0.0 for unknown models.

    With `dearest`, what the image may cost at most when the provider chooses ("auto"
    quality or size): the figure a hard budget must count. Otherwise the usual case.
    """
    info = MODELS.get(model)
    if info is None:
        return 0.0
    usd = _list_price(info, image_size, aspect_ratio, quality, dearest)
    return usd * BATCH_DISCOUNT if batch else usd


def _list_price(info: ModelInfo, image_size: str | None, aspect_ratio: str | None,
                quality: str | None, dearest: bool) -> float:
    prices = info.prices
    if "*" in prices:
        return prices["*"]
    if not info.pixel_sizes:  # priced by image size
        return prices.get(image_size or info.image_sizes[0], max(prices.values()))
    tiers = ("standard", "hd") if info.id.startswith("dall-e") else QUALITIES
    wanted: tuple[str, ...]
    if quality is not None and quality in tiers:
        wanted = (quality,)
    elif info.id.startswith("dall-e"):
        wanted = ("hd" if quality == "high" else "standard",)
    else:  # "auto" or unset: the model picks
        wanted = tiers if dearest else ("medium",)
    try:
        size = pixel_size(info.id, aspect_ratio)
    except ValueError:
        size = "auto"
    sizes = [f"{w}x{h}" for w, h in info.pixel_sizes] if size == "auto" and dearest else \
        ["1024x1024" if size == "auto" else size]
    found = [prices[key] for q in wanted for s in sizes if (key := f"{q}/{s}") in prices]
    return max(found, default=max(prices.values()))


def image_cost(model: str, usage: Mapping[str, Any] | None, list_price: float, *,
               batch: bool = False) -> float:
    """What one image cost on a billing provider: the charge it reported with the answer
    (OpenRouter), else the image tokens it reported times the model's token price when both
    are known, else the list price (already at the batch rate if batch)."""
    reported = reported_cost_usd(usage or {})
    if reported is not None:
        return reported
    info = MODELS.get(model)
    tokens = image_output_tokens(usage or {})
    if info and info.usd_per_image_token and tokens:
        return tokens * info.usd_per_image_token * (BATCH_DISCOUNT if batch else 1.0)
    return list_price


def reported_cost_usd(usage: Mapping[str, Any]) -> float | None:
    """The charge a provider reported with the answer: OpenRouter's `usage.cost`, in its
    credits, which are US dollars. None when absent or not a finite number >= 0."""
    cost = usage.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost) if 0 <= cost < math.inf else None


def image_output_tokens(usage: Mapping[str, Any]) -> int | None:
    """Image tokens in a Gemini `usageMetadata` or an OpenAI `usage` report."""
    details = usage.get("candidatesTokensDetails")  # Gemini
    if isinstance(details, list):
        tokens = sum(d.get("tokenCount", 0) for d in details
                     if isinstance(d, dict) and isinstance(d.get("tokenCount"), int)
                     and d.get("modality") == "IMAGE")
        if tokens:
            return int(tokens)
    output = usage.get("output_tokens_details")  # OpenAI
    if isinstance(output, dict) and type(output.get("image_tokens")) is int:
        return int(output["image_tokens"])
    if type(usage.get("output_tokens")) is int:
        return int(usage["output_tokens"])
    return None
