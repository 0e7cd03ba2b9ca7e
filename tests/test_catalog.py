import pytest

from nbbatch import catalog


def test_gemini_cost_comes_from_reported_image_tokens():
    usage = {"candidatesTokenCount": 1392,
             "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1120}]}
    assert catalog.image_cost("gemini-3-pro-image", "1K", "gemini", usage) == pytest.approx(0.1344)
    assert catalog.image_cost("gemini-3.1-flash-image", "1K", "gemini", usage) == pytest.approx(
        0.0672)


def test_openai_cost_comes_from_output_image_tokens():
    usage = {"output_tokens": 1056, "output_tokens_details": {"image_tokens": 1056}}
    assert catalog.image_cost("gpt-image-1", None, "openai", usage) == pytest.approx(0.04224)


def test_without_usage_the_price_per_image_applies():
    assert catalog.image_cost("gemini-3-pro-image", "4K", "gemini", None) == 0.24
    assert catalog.image_cost("gpt-image-1.5", None, "openai", {"output_tokens": 9}) == 0.034
    assert catalog.image_cost("some-gateway-model", None, "gemini", None) == 0.0


def test_the_simulator_is_free():
    assert catalog.image_cost("gemini-3-pro-image", "1K", "simulator",
                              {"candidatesTokensDetails": [{"modality": "IMAGE",
                                                            "tokenCount": 1120}]}) == 0.0
