import pytest

from nbbatch import catalog
from nbbatch.engine.pricing import Pricing
from nbbatch.model import Item, ProviderConfig


def test_gemini_cost_comes_from_reported_image_tokens():
    usage = {"candidatesTokenCount": 1392,
             "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1120}]}
    assert catalog.image_cost("gemini-3-pro-image", usage, 0.134) == pytest.approx(0.1344)
    assert catalog.image_cost("gemini-3.1-flash-image", usage, 0.067) == pytest.approx(0.0672)
    assert catalog.image_cost("gemini-3-pro-image", usage, 0.067, batch=True) == pytest.approx(
        0.0672)


def test_openai_cost_comes_from_output_image_tokens():
    usage = {"output_tokens": 1056, "output_tokens_details": {"image_tokens": 1056}}
    assert catalog.image_cost("gpt-image-1", usage, 0.042) == pytest.approx(0.04224)


def test_without_usage_the_list_price_applies():
    assert catalog.image_cost("gemini-3-pro-image", None, 0.24) == 0.24
    assert catalog.image_cost("gpt-image-1.5", {"output_tokens": 9}, 0.034) == 0.034
    assert catalog.image_cost("some-gateway-model", {"output_tokens": 9}, 0.0) == 0.0


@pytest.mark.parametrize(("model", "kw", "usd"), [
    ("gemini-3-pro-image", {}, 0.134),
    ("gemini-3-pro-image", {"image_size": "4K"}, 0.24),
    ("gemini-3.1-flash-image", {"image_size": "512"}, 0.045),
    ("gemini-3-pro-image", {"image_size": "4K", "batch": True}, 0.12),
    ("gpt-image-1", {"quality": "low", "aspect_ratio": "1:1"}, 0.011),
    ("gpt-image-1", {"quality": "high", "aspect_ratio": "1:1"}, 0.167),
    ("gpt-image-1", {"quality": "high", "aspect_ratio": "16:9"}, 0.25),
    ("gpt-image-1", {"quality": "high", "aspect_ratio": "16:9", "batch": True}, 0.125),
    ("gpt-image-1", {"aspect_ratio": "16:9"}, 0.063),  # auto: usually medium
    ("gpt-image-1", {"aspect_ratio": "1:1", "dearest": True}, 0.167),  # auto may be high
    ("gpt-image-1", {"dearest": True}, 0.25),  # auto size may be oblong
    ("gpt-image-1-mini", {"quality": "medium", "aspect_ratio": "2:3"}, 0.015),
    ("dall-e-3", {"quality": "high", "aspect_ratio": "16:9"}, 0.12),
    ("dall-e-3", {}, 0.04),
    ("some-gateway-model", {}, 0.0),
])  # fmt: skip
def test_list_prices_follow_quality_size_and_mode(model, kw, usd):
    assert catalog.price(model, **kw) == pytest.approx(usd)


def test_pixel_sizes_are_the_nearest_the_model_takes():
    assert catalog.pixel_size("gpt-image-1", "16:9") == "1536x1024"
    assert catalog.pixel_size("gpt-image-1", "9:16") == "1024x1536"
    assert catalog.pixel_size("gpt-image-1", None) == "auto"
    assert catalog.pixel_size("dall-e-3", "16:9") == "1792x1024"
    with pytest.raises(ValueError, match="16:9"):
        catalog.pixel_size("gpt-image-1", "wide")


def test_pricing_reads_the_providers_quality_and_the_simulator_is_free():
    item = Item("a", "p", "openai", "gpt-image-1", aspect_ratio="3:2")
    high = Pricing({"openai": ProviderConfig("openai", options={"quality": "high"})})
    low = Pricing({"openai": ProviderConfig("openai", options={"quality": "low"})})
    assert high.estimate(item) == pytest.approx(0.25)
    assert low.estimate(item) == pytest.approx(0.016)
    sim = Item("b", "p", "simulator", "gemini-3-pro-image")
    assert high.estimate(sim) == 0.0
