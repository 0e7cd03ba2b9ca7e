"""The manifest knows Stability and OpenRouter: their models, ratios and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbbatch.catalog import family
from nbbatch.errors import ManifestError, UsageError
from nbbatch.manifest import apply_overrides, load_manifest
from nbbatch.providers.registry import serves


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(tmp_path: Path, text: str):
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    return load_manifest("m.yaml")


def fails(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text)
    return str(info.value)


@pytest.mark.parametrize(("model", "fam"), [
    ("stable-image-core", "stability"), ("sd3.5-large", "stability"),
    ("stable-image-next", "stability"), ("sd3.7-huge", "stability"),
    ("google/gemini-3-pro-image-preview", "openrouter"), ("someone/new-model", "openrouter"),
    ("models/gemini-3-pro-image", None), ("publishers/google/models/gemini-3-pro-image", None),
    ("a/b/c", None), ("gpt-image-1", "openai"), ("flux-pro", None),
])  # fmt: skip
def test_family(model, fam):
    assert family(model) == fam


@pytest.mark.parametrize(("provider", "model", "ok"), [
    ("stability", "stable-image-core", True), ("gemini", "stable-image-core", False),
    ("openrouter", "openai/gpt-image-1", True), ("openai", "openai/gpt-image-1", True),
    ("gemini", "google/gemini-3-pro-image-preview", False),
    ("openrouter", "gpt-image-1", False), ("openrouter", "gemini-3-pro-image", False),
    ("vertex", "publishers/google/models/gemini-3-pro-image", True),
])  # fmt: skip
def test_serves(provider, model, ok):
    assert serves(provider, model) is ok


def test_stability_and_openrouter_options_reach_the_provider_config(tmp_path):
    m = load(tmp_path, """\
defaults: {provider: stability, aspect_ratio: "21:9"}
providers:
  stability: {negative_prompt: blurry, style_preset: anime, seed: 5, output_format: webp,
              strength: 0.4}
  openrouter: {model: google/gemini-2.5-flash-image, referer: "https://me.example",
               title: My batch}
failover: {order: [stability, openrouter]}
prompts:
  - prompt: a kite
""")
    assert m.items[0].model == "stable-image-core"  # the catalog's default for stability
    assert dict(m.providers["stability"].options) == {
        "seed": 5, "output_format": "webp", "negative_prompt": "blurry", "style_preset": "anime",
        "strength": 0.4}
    assert dict(m.providers["openrouter"].options) == {"referer": "https://me.example",
                                                       "title": "My batch"}
    assert m.providers["stability"].timeout == m.providers["openrouter"].timeout == 180.0


@pytest.mark.parametrize(("text", "expected"), [
    ("defaults: {provider: stability}\nprompts:\n  - prompt: a\n    aspect_ratio: \"4:3\"\n",
     "m.yaml:4: prompts[0].aspect_ratio: aspect ratio '4:3' is not supported by "
     "stable-image-core; use one of 21:9, 16:9, 3:2, 5:4, 1:1, 4:5, 2:3, 9:16, 9:21"),
    ("prompts:\n  - prompt: a\n    provider: stability\n    image_size: 2K\n",
     "m.yaml:4: prompts[0].image_size: image size '2K' is not supported by stable-image-core; "
     "use one of 1K"),
    ("providers:\n  stability:\n    style_preset: watercolour\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.stability.style_preset: must be one of 'enhance', 'anime', "),
    ("providers:\n  stability:\n    seed: -1\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.stability.seed: must be a whole number from 0 (random) to "
     "4294967294, got -1"),
    ("providers:\n  stability:\n    strength: 2\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.stability.strength: must be a number from 0 to 1, got 2"),
    ("providers:\n  openrouter:\n    title: [a]\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.openrouter.title: must be one line of ASCII text, got ['a']"),
    ("providers:\n  stability:\n    model: google/gemini-2.5-flash-image\nprompts:\n"
     "  - prompt: a\n",
     "m.yaml:3: providers.stability.model: 'google/gemini-2.5-flash-image' is a openrouter "
     "model, which provider 'stability' cannot serve"),
    ("providers:\n  openrouter:\n    quality: high\nprompts:\n  - prompt: a\n",
     "('quality' is an option of openai only)"),
    ("prompts:\n  - prompt: a\n    model: google/gemini-3-pro-image-preview\n",
     "'google/gemini-3-pro-image-preview' is a openrouter model, which provider 'gemini' "
     "cannot serve"),
])  # fmt: skip
def test_errors(tmp_path, text, expected):
    assert expected in fails(tmp_path, text)


def test_a_gemini_ratio_stability_lacks_is_fine_when_stability_is_a_backup(tmp_path):
    m = load(tmp_path, """\
defaults: {aspect_ratio: "3:4"}
providers:
  stability: {model: sd3.5-medium}
failover: {order: [gemini, openai, stability]}
prompts:
  - prompt: a kite
""")
    assert (m.items[0].provider, m.items[0].aspect_ratio) == ("gemini", "3:4")
    assert m.failover.order == ("gemini", "openai", "stability")


def test_switching_every_prompt_to_stability_checks_its_ratios(tmp_path):
    m = load(tmp_path, 'prompts:\n  - prompt: a\n    aspect_ratio: "16:9"\n')
    switched = apply_overrides(m, provider="stability")
    assert (switched.items[0].provider, switched.items[0].model) == ("stability",
                                                                    "stable-image-core")
    m = load(tmp_path, 'prompts:\n  - prompt: a\n    aspect_ratio: "4:3"\n')
    with pytest.raises(UsageError, match="stable-image-core does not support"):
        apply_overrides(m, provider="stability")
