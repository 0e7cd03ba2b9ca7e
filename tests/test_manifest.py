"""Manifest loading: the SPEC §3 example, defaults, ids, fingerprints, prompts files, and one
test per kind of error with its exact `file:line: field: message`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbbatch.errors import ManifestError, UsageError
from nbbatch.manifest import apply_overrides, load_manifest
from nbbatch.manifest.entries import derive_id
from nbbatch.model import Interval, PacingConfig, RetryConfig, parse_interval
from nbbatch.providers.registry import default_model

SPEC_EXAMPLE = """\
version: 1
output: out/catalog            # relative to the manifest; --out overrides
defaults:                      # apply to every prompt unless the prompt overrides them
  provider: gemini
  model: gemini-3-pro-image
  aspect_ratio: "4:3"
  image_size: 1K               # 1K | 2K | 4K (upper-case K), where the model supports it
  count: 1                     # images wanted for each prompt
providers:
  gemini:
    api_key_env: GEMINI_API_KEY            # the key is read from the environment only
    base_url: https://generativelanguage.googleapis.com
    timeout: 180                           # seconds for one request
  openai:
    api_key_env: OPENAI_API_KEY
    base_url: https://api.openai.com/v1
    model: gpt-image-1
pacing:
  interval: 5-10               # seconds between request starts on one provider
  concurrency: 4               # requests in flight at most, per provider
retry:
  max_attempts: 6              # per image, all causes together
  initial_delay: 2             # first backoff, seconds
  max_delay: 120               # backoff cap, seconds
failover:
  order: [gemini, openai]      # primary first
  trip_after: 3                # consecutive overload failures that switch away from a provider
  probe_every: 300             # seconds between probes of a provider that was switched away from
prompts:
  - id: red-sneaker
    prompt: A red sneaker on white, studio light
  - id: blue-sneaker
    prompt: A blue sneaker on white, studio light
    aspect_ratio: "1:1"
    count: 3
  - id: sneaker-night
    prompt: Put this sneaker on a neon street at night
    images: [refs/sneaker.png]             # reference images (editing), relative to the manifest
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def png(path: Path, color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path, format="PNG")
    return path


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(path: Path | str) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return str(info.value)


def fails(tmp_path: Path, text: str) -> str:
    """The error for a manifest `m.yaml` holding `text`, with the file name cut to `m.yaml`."""
    write(tmp_path, text)
    return error("m.yaml")


# ----------------------------------------------------------------------- the SPEC example


@pytest.fixture
def example(tmp_path: Path) -> Path:
    png(tmp_path / "refs" / "sneaker.png")
    return write(tmp_path, SPEC_EXAMPLE, "prompts.yaml")


def test_spec_example_loads_with_defaults_and_overrides(example: Path, tmp_path: Path) -> None:
    m = load_manifest(example)
    assert m.path == example.resolve()
    assert m.output == (tmp_path / "out" / "catalog").resolve()
    assert m.pacing == PacingConfig(Interval(5, 10), 4)
    assert m.retry == RetryConfig(6, 2.0, 120.0)
    assert m.failover is not None
    assert (m.failover.order, m.failover.trip_after, m.failover.probe_every) == (
        ("gemini", "openai"), 3, 300.0)
    gemini, openai = m.providers["gemini"], m.providers["openai"]
    assert (gemini.api_key_env, gemini.timeout, gemini.model) == ("GEMINI_API_KEY", 180.0, None)
    assert (openai.base_url, openai.model) == ("https://api.openai.com/v1", "gpt-image-1")

    red, blue, night = m.items
    assert [i.id for i in m.items] == ["red-sneaker", "blue-sneaker", "sneaker-night"]
    assert (red.provider, red.model, red.aspect_ratio, red.image_size, red.count) == (
        "gemini", "gemini-3-pro-image", "4:3", "1K", 1)
    assert (blue.aspect_ratio, blue.count) == ("1:1", 3)
    assert night.references == ((tmp_path / "refs" / "sneaker.png").resolve(),)
    digest = hashlib.sha256((tmp_path / "refs" / "sneaker.png").read_bytes()).hexdigest()
    assert night.reference_digests == (digest,)
    assert [i.line for i in m.items] == [30, 32, 36]
    assert m.image_count == 5
    assert len({i.fingerprint for i in m.items}) == 3


def test_minimal_manifest_gets_every_default(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "prompts:\n  - prompt: A red sneaker\n"))
    (item,) = m.items
    assert (item.provider, item.model, item.count) == ("gemini", default_model("gemini"), 1)
    assert (item.aspect_ratio, item.image_size, item.references) == (None, None, ())
    assert item.id == derive_id("A red sneaker") == "a-red-sneaker-" + hashlib.sha256(
        b"A red sneaker").hexdigest()[:8]
    assert (m.output, m.pacing, m.retry, m.failover) == (None, PacingConfig(), RetryConfig(), None)
    assert set(m.providers) == {"gemini"}


def test_prompt_defaults_model_follows_the_prompts_own_provider(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, """\
defaults: {model: gemini-3.1-flash-image, image_size: "512"}
providers:
  openai: {model: gpt-image-1}
prompts:
  - prompt: a
  - prompt: b
    provider: openai
    image_size: 1K
  - prompt: c
    provider: simulator
    image_size: 2K
"""))
    assert [(i.provider, i.model) for i in m.items] == [
        ("gemini", "gemini-3.1-flash-image"), ("openai", "gpt-image-1"),
        ("simulator", default_model("simulator"))]
    assert set(m.providers) == {"gemini", "openai", "simulator"}


@pytest.mark.parametrize(("prompt", "slug"), [
    ("A red sneaker, studio light!", "a-red-sneaker-studio-light"),
    ("Crème brûlée — café", "creme-brulee-cafe"),
    ("東京の夜", "img"),
    ("word " * 20, "word-word-word-word-word-word-word-word"),
    ("x" * 60, "x" * 40),
])
def test_derived_ids_are_a_short_slug_plus_a_hash(prompt: str, slug: str) -> None:
    digest = hashlib.sha256(prompt.strip().encode()).hexdigest()[:8]
    assert derive_id(prompt.strip()) == f"{slug}-{digest}"


def test_prompt_text_is_stripped(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "prompts:\n  - prompt: |\n      A red sneaker\n"))
    assert m.items[0].prompt == "A red sneaker"


# ------------------------------------------------------------------------- fingerprints


def _fingerprints(path: Path) -> dict[str, str]:
    return {i.id: i.fingerprint for i in load_manifest(path).items}


def test_fingerprints_are_the_same_in_every_process(example: Path) -> None:
    """A nightly cron run is a new process with a new hash seed: nothing may depend on it."""
    code = ("import json, sys; from nbbatch.manifest import load_manifest; "
            "print(json.dumps({i.id: i.fingerprint for i in load_manifest(sys.argv[1]).items}))")
    seen = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        seen.append(json.loads(out.stdout))
    assert seen[0] == seen[1] == _fingerprints(example)
    assert len(set(seen[0].values())) == len(seen[0])


@pytest.mark.parametrize(("old", "new"), [
    ("prompt: A red sneaker on white", "prompt: A red sneaker on black"),
    ("model: gemini-3-pro-image", "model: gemini-3.1-flash-image"),
    ('aspect_ratio: "4:3"', 'aspect_ratio: "16:9"'),
    ("image_size: 1K", "image_size: 2K"),
])
def test_fingerprints_change_with_what_shapes_the_image(example: Path, old: str, new: str) -> None:
    before = _fingerprints(example)
    example.write_text(SPEC_EXAMPLE.replace(old, new))
    assert _fingerprints(example)["red-sneaker"] != before["red-sneaker"]


def test_fingerprint_changes_with_reference_bytes_only(example: Path, tmp_path: Path) -> None:
    before = _fingerprints(example)
    png(tmp_path / "refs" / "sneaker.png", "blue")
    after = _fingerprints(example)
    assert after["sneaker-night"] != before["sneaker-night"]
    assert after["red-sneaker"] == before["red-sneaker"]


def test_unrelated_prompt_change_keeps_other_fingerprints(example: Path) -> None:
    before = _fingerprints(example)
    example.write_text(SPEC_EXAMPLE.replace("A blue sneaker", "A green sneaker"))
    after = _fingerprints(example)
    assert after["blue-sneaker"] != before["blue-sneaker"]
    assert after["red-sneaker"] == before["red-sneaker"]
    assert after["sneaker-night"] == before["sneaker-night"]


def test_reference_read_once_per_distinct_path(tmp_path: Path, monkeypatch) -> None:
    import nbbatch.manifest.items as items_module

    png(tmp_path / "refs" / "a.png")
    calls: list[Path] = []
    real = items_module._digest_reference
    monkeypatch.setattr(items_module, "_digest_reference",
                        lambda path, raw: calls.append(path) or real(path, raw))
    rows = "".join(f'{{"prompt": "p{i}", "images": ["refs/a.png", "./refs/a.png"]}}\n'
                   for i in range(500))
    write(tmp_path, rows, "p.jsonl")
    m = load_manifest(write(tmp_path, "prompts_file: p.jsonl\n"))
    assert len(m.items) == 500
    assert calls == [(tmp_path / "refs" / "a.png").resolve()]


def test_absolute_reference_path_is_allowed(tmp_path: Path) -> None:
    ref = png(tmp_path / "elsewhere" / "x.png")
    m = load_manifest(write(tmp_path, f"prompts:\n  - prompt: a\n    images: ['{ref}']\n"))
    assert m.items[0].references == (ref.resolve(),)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts:\n  - prompt: a\n    count: [1,\n",
     "m.yaml:4: invalid YAML: did not find expected node content (while parsing a flow node)"),
    ("prompts:\n\t- prompt: a\n",
     "m.yaml:2: invalid YAML: found character that cannot start any token "
     "(while scanning for the next token)"),
    ("- a\n- b\n",
     "m.yaml:1: the manifest must be a mapping of sections (version, output, defaults, "
     "providers, pacing, retry, failover, prompts, prompts_file, mode, batch), got a list"),
    ("", "m.yaml: the manifest is empty: it needs prompts or a prompts_file"),
    ("version: 1\n", "m.yaml:1: no prompts: add a prompts list or a prompts_file"),
    ("prompts:\n  - prompt: a\n    prompt: b\n",
     "m.yaml:3: duplicate key 'prompt' (first on line 2)"),
    ("prompts:\n  - prompt: a\n    on: 3\n",
     "m.yaml:3: keys must be text, got true/false True (YAML reads yes/no/on/off as true/false "
     "and 1:2 as a number: quote the key)"),
])
def test_document_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text) == expected


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_bytes(b"prompts:\n  - prompt: caf\xe9\n")
    assert error("m.yaml") == "m.yaml:2: not UTF-8 text: invalid continuation byte"


def test_python_tags_are_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"prompts: !!python/object/apply:os.system ['touch {marker}']\n"
    assert fails(tmp_path, text) == (
        "m.yaml:1: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' (a manifest is plain YAML: "
        "language-specific tags are not allowed)")
    assert not marker.exists()


ALIAS_MESSAGE = (
    "YAML aliases (*name) are not allowed in a manifest, as they can expand a small file into "
    "billions of values: the value anchored (&name) here is reused; write it out in full where "
    "it is needed")


def test_aliases_are_rejected(tmp_path: Path) -> None:
    text = "defaults: &d\n  count: 2\nprompts:\n  - prompt: a\n    <<: *d\n"
    assert fails(tmp_path, text) == f"m.yaml:2: {ALIAS_MESSAGE}"


def test_billion_laughs_is_rejected_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    lines.append("prompts: *a9")  # 10**9 "lol"s if expanded: refused at the first reuse
    assert fails(tmp_path, "\n".join(lines) + "\n") == f"m.yaml:10: {ALIAS_MESSAGE}"


def test_oversized_manifest_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "m.yaml", "wb") as f:
        f.truncate(51 * 2**20)  # sparse: no 51 MB written
    assert error("m.yaml") == (
        "m.yaml: the manifest is 51 MB; the limit is 50 MB (put large batches in a prompts_file)")


def test_missing_manifest(tmp_path: Path) -> None:
    assert error("nope.yaml") == "nope.yaml: cannot read the manifest: No such file or directory"


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts:\n  - prompt: a\nprompt_file: x.csv\n",
     "m.yaml:3: prompt_file: unknown key 'prompt_file'; allowed keys here: version, output, "
     "defaults, providers, pacing, retry, failover, prompts, prompts_file, mode, batch"),
    ("pacing:\n  intervall: 5\nprompts:\n  - prompt: a\n",
     "m.yaml:2: pacing.intervall: unknown key 'intervall'; allowed keys here: interval, "
     "concurrency"),
    ("prompts:\n  - prompt: a\n  - prompt: b\n    cont: 3\n",
     "m.yaml:4: prompts[1].cont: unknown key 'cont'; allowed keys: id, prompt, provider, model, "
     "aspect_ratio, image_size, count, images"),
    ("defaults:\n  id: x\nprompts:\n  - prompt: a\n",
     "m.yaml:2: defaults.id: unknown key 'id'; allowed keys: provider, model, aspect_ratio, "
     "image_size, count"),
    ("providers:\n  gemni:\n    timeout: 3\nprompts:\n  - prompt: a\n",
     "m.yaml:2: providers.gemni: unknown provider 'gemni'; known providers: gemini, vertex, "
     "openai, stability, openrouter, simulator"),
    ("providers:\n  gemini:\n    project: p\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.gemini.project: unknown key 'project'; allowed keys here: api_key_env, "
     "base_url, timeout, model, response_modalities ('project' is an option of vertex and "
     "openai only)"),
    ("providers:\n  openai:\n    seed: 3\nprompts:\n  - prompt: a\n",
     "m.yaml:3: providers.openai.seed: unknown key 'seed'; allowed keys here: api_key_env, "
     "base_url, timeout, model, quality, background, output_format, moderation, input_fidelity, "
     "organization, project ('seed' is an option of stability and simulator only)"),
])
def test_unknown_keys(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts:\n  - prompt: a\n  - prompt: b\n    count: \"3\"\n",
     "m.yaml:4: prompts[1].count: must be a whole number from 1 to 100, got text '3'"),
    ("prompts:\n  - prompt: a\n    count: 0\n",
     "m.yaml:3: prompts[0].count: must be a whole number from 1 to 100, got 0"),
    ("prompts:\n  - prompt: a\n    count: 101\n",
     "m.yaml:3: prompts[0].count: must be a whole number from 1 to 100, got 101"),
    ("prompts:\n  - prompt: a\n    count: true\n",
     "m.yaml:3: prompts[0].count: must be a whole number from 1 to 100, got true/false True"),
    ("prompts:\n  - prompt: a\n    count: 2.0\n",
     "m.yaml:3: prompts[0].count: must be a whole number from 1 to 100, got a number 2.0"),
    ("defaults:\n  count: 0\nprompts:\n  - prompt: a\n",
     "m.yaml:2: defaults.count: must be a whole number from 1 to 100, got 0"),
    ("prompts:\n  - id: a\n    count: 2\n",
     "m.yaml:2: prompts[0].prompt: required: the text to generate an image from"),
    ("prompts:\n  - id: a\n    prompt: '   '\n",
     "m.yaml:3: prompts[0].prompt: is empty: write the text to generate an image from"),
    ("prompts:\n  - prompt: 42\n", "m.yaml:2: prompts[0].prompt: must be text, got an integer 42"),
    ("prompts:\n  - A red sneaker\n",
     "m.yaml:2: prompts[0]: must be a mapping with at least a prompt (- prompt: A red sneaker), "
     "got text 'A red sneaker'"),
    ("prompts:\n  prompt: a\n", "m.yaml:1: prompts: must be a list, got a mapping {'prompt': 'a'}"),
    ("prompts:\n  - id: 7\n    prompt: a\n",
     "m.yaml:2: prompts[0].id: must be text, got an integer 7; quote it: id: \"7\""),
    ("version: 2\nprompts:\n  - prompt: a\n",
     "m.yaml:1: version: unsupported version 2; this nbbatch reads version 1"),
    ("version: '1'\nprompts:\n  - prompt: a\n",
     "m.yaml:1: version: must be an integer, got text '1'"),
    ("output: 5\nprompts:\n  - prompt: a\n", "m.yaml:1: output: must be text, got an integer 5"),
    ("output: ''\nprompts:\n  - prompt: a\n", "m.yaml:1: output: must not be empty"),
    ("defaults: gemini\nprompts:\n  - prompt: a\n",
     "m.yaml:1: defaults: must be a mapping of provider, model, aspect_ratio, image_size, count, "
     "got text 'gemini'"),
])
def test_wrong_types_and_values(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("defaults:\n  image_size: 1k\nprompts:\n  - prompt: a\n",
     "m.yaml:2: defaults.image_size: '1k' needs an upper-case K: write '1K'"),
    ("prompts:\n  - prompt: a\n    image_size: 8K\n",
     "m.yaml:3: prompts[0].image_size: '8K' is not an image size; use one of 512, 1K, 2K, 4K"),
    ("prompts:\n  - prompt: a\n    image_size: 512\n",
     "m.yaml:3: prompts[0].image_size: must be text, got an integer 512; write it in quotes: "
     "\"512\""),
    ("prompts:\n  - prompt: a\n    aspect_ratio: 4:3\n",
     "m.yaml:3: prompts[0].aspect_ratio: must be text such as \"4:3\", got the number 243: quote "
     "it (YAML reads an unquoted 4:3 as a number)"),
    ("prompts:\n  - prompt: a\n    aspect_ratio: square\n",
     "m.yaml:3: prompts[0].aspect_ratio: 'square' is not an aspect ratio; write width:height, "
     "e.g. \"4:3\""),
    ("prompts:\n  - prompt: a\n    model: gemini-2.5-flash-image\n    aspect_ratio: '1:8'\n",
     "m.yaml:4: prompts[0].aspect_ratio: aspect ratio '1:8' is not supported by "
     "gemini-2.5-flash-image; use one of 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"),
    ("defaults:\n  image_size: '512'\nprompts:\n  - prompt: a\n    model: gemini-2.5-flash-image\n",
     "m.yaml:5: prompts[0].model: image size '512' is not supported by gemini-2.5-flash-image; "
     "use one of 1K"),
    ("defaults:\n  model: gemini-2.5-flash-image\n  image_size: 4K\nprompts:\n  - prompt: a\n",
     "m.yaml:3: defaults.image_size: image size '4K' is not supported by "
     "gemini-2.5-flash-image; use one of 1K"),
    ("prompts:\n  - prompt: a\n    provider: azure\n",
     "m.yaml:3: prompts[0].provider: unknown provider 'azure'; known providers: gemini, vertex, "
     "openai, stability, openrouter, simulator"),
    ("prompts:\n  - prompt: a\n    provider: openai\n    model: gemini-3-pro-image\n",
     "m.yaml:4: prompts[0].model: 'gemini-3-pro-image' is a gemini model, which provider "
     "'openai' cannot serve"),
    ("defaults:\n  model: gpt-image-1\nprompts:\n  - prompt: a\n",
     "m.yaml:2: defaults.model: 'gpt-image-1' is a openai model, which provider 'gemini' cannot "
     "serve"),
    ("prompts:\n  - prompt: a\n    model: gemini 3\n",
     "m.yaml:3: prompts[0].model: 'gemini 3' is not a model name (empty, or with spaces)"),
])
def test_model_size_and_aspect_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text) == expected


def test_unknown_models_are_allowed_without_catalog_checks(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "prompts:\n  - prompt: a\n    model: gemini-9-ultra\n"
                                      "    aspect_ratio: '7:3'\n    image_size: 4K\n"))
    assert (m.items[0].model, m.items[0].aspect_ratio) == ("gemini-9-ultra", "7:3")


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts:\n  - id: a\n    prompt: x\n  - id: b\n    prompt: y\n  - id: A\n    prompt: z\n",
     "m.yaml:6: prompts[2].id: duplicate id 'A' (first used at m.yaml:2; ids are compared "
     "ignoring case because they become file names)"),
    ("prompts:\n  - prompt: same\n  - prompt: other\n  - prompt: same\n",
     "m.yaml:4: prompts[2].id: two prompts have the same text and no id, so both would get the id "
     f"'same-{hashlib.sha256(b'same').hexdigest()[:8]}' (first at m.yaml:2); give them explicit "
     "ids"),
    ("prompts:\n  - id: shoe\n    prompt: x\n    count: 3\n  - id: shoe-2\n    prompt: y\n",
     "m.yaml:5: prompts[1].id: id 'shoe-2' names the same file as image 2 of 'shoe' (count: 3, "
     "first at m.yaml:2); rename one of them"),
])
def test_duplicate_ids(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text) == expected


def test_numbered_ids_beyond_the_count_are_fine(tmp_path: Path) -> None:
    text = "prompts:\n  - {id: shoe, prompt: x, count: 2}\n  - {id: shoe-3, prompt: y}\n"
    assert [i.id for i in load_manifest(write(tmp_path, text)).items] == ["shoe", "shoe-3"]


ID_RULE = ("ids become file names, so use 1-100 of the characters A-Z a-z 0-9 . _ - , starting "
           "with a letter or digit, with no '..' and no '.' at the end")


@pytest.mark.parametrize("bad", [
    "../x", "a/b", "a\\b", "/abs", "x\x00y", "", ".hidden", "a..b", "tab\tid", "end.", "-x",
    "x" * 101, "a b", "ünï",
])
def test_unsafe_ids(tmp_path: Path, bad: str) -> None:
    text = "prompts:\n  - prompt: a\n    id: " + json.dumps(bad) + "\n"
    shown = repr(bad) if len(repr(bad)) <= 60 else repr(bad)[:57] + "..."
    assert fails(tmp_path, text) == f"m.yaml:3: prompts[0].id: unsafe id {shown}: {ID_RULE}"


@pytest.mark.parametrize("bad", ["CON", "con", "nul.txt", "Aux.tar.gz", "COM1", "lpt9.png"])
def test_windows_reserved_ids(tmp_path: Path, bad: str) -> None:
    text = f"prompts:\n  - prompt: a\n    id: {bad}\n"
    assert fails(tmp_path, text) == (
        f"m.yaml:3: prompts[0].id: unsafe id {bad!r}: it is a reserved file name on Windows")


@pytest.mark.parametrize("good", ["a", "A1", "red-sneaker_2.v3", "COM10", "console", "x" * 100])
def test_safe_ids(tmp_path: Path, good: str) -> None:
    m = load_manifest(write(tmp_path, f"prompts:\n  - prompt: a\n    id: {good}\n"))
    assert m.items[0].id == good


def test_reference_errors(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "notes.txt").write_text("hello")
    with open(tmp_path / "refs" / "huge.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(21 * 2**20)
    png(tmp_path / "refs" / "ok.png")
    (tmp_path / "refs" / "ok.webp").write_bytes(b"RIFF\0\0\0\0WEBPVP8 ")
    (tmp_path / "refs" / "ok.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    base = "prompts:\n  - prompt: a\n    images:\n      - refs/ok.png\n      - refs/ok.webp\n" \
           "      - refs/ok.jpg\n      - "
    refs = (tmp_path / "refs").resolve()
    cases = {
        "refs/nope.png": f"reference image 'refs/nope.png' not found (looked for {refs}/nope.png)",
        "refs": f"reference image 'refs' is not a file ({refs} is a folder)",
        "refs/notes.txt": f"reference image 'refs/notes.txt' is not a PNG, JPEG or WEBP file "
                          f"({refs}/notes.txt)",
        "refs/huge.png": "reference image 'refs/huge.png' is 21.0 MB; the limit is 20 MB",
    }
    for ref, message in cases.items():
        assert fails(tmp_path, base + ref + "\n") == f"m.yaml:7: prompts[0].images[3]: {message}"
    assert fails(tmp_path, "prompts:\n  - prompt: a\n    images: refs/ok.png\n") == (
        "m.yaml:3: prompts[0].images: must be a list of image paths, e.g. [refs/a.png], got text "
        "'refs/ok.png'")
    assert len(load_manifest(write(tmp_path, base + "refs/ok.png\n")).items[0].references) == 4


@pytest.mark.parametrize(("value", "expected"), [
    ("fast", "expected seconds as a number (7), a range \"5-10\" or a list [5, 10], got 'fast'"),
    ("10-5", "the range 10-5 is reversed: put the smaller number first"),
    ("-3", "seconds must not be negative, got -3"),
    ("[5]", "expected seconds as a number (7), a range \"5-10\" or a list [5, 10], got [5]"),
    ("[5, x]", "expected seconds as a number (7), a range \"5-10\" or a list [5, 10], got "
               "[5, 'x']"),
    ("true", "expected seconds as a number (7), a range \"5-10\" or a list [5, 10], got True"),
    (".inf", "expected seconds as a number (7), a range \"5-10\" or a list [5, 10], got inf"),
])
def test_interval_errors(tmp_path: Path, value: str, expected: str) -> None:
    text = f"pacing:\n  interval: {value}\nprompts:\n  - prompt: a\n"
    assert fails(tmp_path, text) == f"m.yaml:2: pacing.interval: {expected}"


@pytest.mark.parametrize(("value", "expected"), [
    (7, Interval(7, 7)), (7.5, Interval(7.5, 7.5)), ("7", Interval(7, 7)), (0, Interval(0, 0)),
    ("5-10", Interval(5, 10)), (" 5 - 10 ", Interval(5, 10)), ("0.5-1.5", Interval(0.5, 1.5)),
    ([5, 10], Interval(5, 10)), ((3, 3), Interval(3, 3)),
])
def test_parse_interval_accepts(value: object, expected: Interval) -> None:
    assert parse_interval(value) == expected


@pytest.mark.parametrize("value", ["", "5-", "-5", "5-10-15", "7s", None, True, [1, 2, 3],
                                   [True, 2], 10**400, float("nan"), [2, 1]])
def test_parse_interval_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected seconds|reversed|negative"):
        parse_interval(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("pacing:\n  concurrency: 0\n", "m.yaml:2: pacing.concurrency: must be >= 1, got 0"),
    ("pacing:\n  concurrency: '4'\n",
     "m.yaml:2: pacing.concurrency: must be an integer, got text '4'"),
    ("retry:\n  max_attempts: 0\n", "m.yaml:2: retry.max_attempts: must be >= 1, got 0"),
    ("retry:\n  max_delay: -1\n", "m.yaml:2: retry.max_delay: must be >= 0, got -1"),
    ("retry:\n  initial_delay: 200\n",
     "m.yaml:2: retry.initial_delay: must not exceed max_delay (120)"),
    ("failover:\n  order: [gemini, azure]\n",
     "m.yaml:2: failover.order[1]: unknown provider 'azure'; known providers: gemini, vertex, "
     "openai, stability, openrouter, simulator"),
    ("failover:\n  order:\n    - gemini\n    - gemini\n",
     "m.yaml:4: failover.order[1]: 'gemini' is listed twice"),
    ("failover:\n  order: []\n", "m.yaml:2: failover.order: must not be empty"),
    ("failover:\n  trip_after: 2\n", "m.yaml:1: failover.order: required"),
    ("failover:\n  order: [gemini]\n  trip_after: 0\n",
     "m.yaml:3: failover.trip_after: must be >= 1, got 0"),
    ("failover:\n  order: [gemini]\n  probe_every: 0\n",
     "m.yaml:3: failover.probe_every: must be > 0, got 0"),
    ("providers:\n  gemini:\n    timeout: 0\n",
     "m.yaml:3: providers.gemini.timeout: must be > 0, got 0"),
    ("providers:\n  gemini:\n    base_url: ftp://x\n",
     "m.yaml:3: providers.gemini.base_url: must start with https:// (or http://), got 'ftp://x'"),
    ("providers:\n  openai:\n    model: gemini-3-pro-image\n",
     "m.yaml:3: providers.openai.model: 'gemini-3-pro-image' is a gemini model, which provider "
     "'openai' cannot serve"),
    ("providers:\n  simulator:\n    daily_quota: -1\n",
     "m.yaml:3: providers.simulator.daily_quota: must be >= 0, got -1"),
    ("providers:\n  simulator:\n    latency: slow\n",
     "m.yaml:3: providers.simulator.latency: expected seconds as a number (7), a range \"5-10\" "
     "or a list [5, 10], got 'slow'"),
    ("providers:\n  simulator:\n    faults: '504=0.3'\n",
     "m.yaml:3: providers.simulator.faults: bad fault '504=0.3': use KEY=RATE with KEY one of "
     "503, 429, 500, timeout, blocked, no_image (or overloaded, rate_limited, internal)"),
])
def test_section_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert fails(tmp_path, text + "prompts:\n  - prompt: a\n") == expected


def test_api_key_env_never_echoes_a_pasted_key(tmp_path: Path) -> None:
    secret = "sk-proj-abcdef0123456789"
    for value in (secret, f"[{secret}]"):
        message = fails(tmp_path, f"providers:\n  openai:\n    api_key_env: {value}\n"
                                  "    model: gpt-image-1\nprompts:\n  - prompt: a\n")
        assert secret not in message
        assert message.startswith("m.yaml:3: providers.openai.api_key_env: ")
        assert "must be" in message


def test_provider_options(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, """\
providers:
  vertex: {project: my-proj, location: us-central1, timeout: 60}
  simulator:
    latency: [1, 2]
    faults: {overloaded: 0.3, "429": 0.1}
    daily_quota: 5
    seed: 7
  gemini:
prompts:
  - prompt: a
"""))
    assert m.providers["vertex"].options == {"project": "my-proj", "location": "us-central1"}
    assert m.providers["vertex"].timeout == 60.0
    assert m.providers["simulator"].options == {
        "latency": (1.0, 2.0), "faults": "overloaded=0.3,429=0.1", "daily_quota": 5, "seed": 7}
    assert m.providers["gemini"].options == {}


# ------------------------------------------------------------------------- prompts files

CSV_TEXT = """\
id,prompt,count,images,aspect_ratio
,A red sneaker,,,
blue,"A blue sneaker,
on two lines",3,refs/a.png; refs/b.png,1:1

night,Night street,,refs/a.png|refs/b.png,
"""


def test_csv_prompts_file(tmp_path: Path) -> None:
    png(tmp_path / "refs" / "a.png")
    png(tmp_path / "refs" / "b.png", "blue")
    write(tmp_path, CSV_TEXT, "p.csv")
    m = load_manifest(write(tmp_path, "defaults: {aspect_ratio: '4:3'}\nprompts_file: p.csv\n"))
    red, blue, night = m.items
    assert red.id == derive_id("A red sneaker")
    assert (red.count, red.aspect_ratio, red.references) == (1, "4:3", ())
    assert (blue.prompt, blue.count) == ("A blue sneaker,\non two lines", 3)
    assert blue.aspect_ratio == "1:1"
    refs = ((tmp_path / "refs" / "a.png").resolve(), (tmp_path / "refs" / "b.png").resolve())
    assert blue.references == night.references == refs
    assert [i.line for i in m.items] == [2, 3, 6]


def test_inline_prompts_come_before_the_file(tmp_path: Path) -> None:
    write(tmp_path, '{"prompt": "from the file"}\n', "p.jsonl")
    m = load_manifest(write(tmp_path, "prompts_file: p.jsonl\nprompts:\n  - prompt: inline\n"))
    assert [i.prompt for i in m.items] == ["inline", "from the file"]


@pytest.mark.parametrize(("text", "expected"), [
    ("id,promt\na,b\n",
     "p.csv:1: unknown column 'promt' in the header; allowed columns: id, prompt, provider, "
     "model, aspect_ratio, image_size, count, images"),
    ("id,prompt,\na,b,\n",
     "p.csv:1: a column has no name in the header; allowed columns: id, prompt, provider, model, "
     "aspect_ratio, image_size, count, images"),
    ("id,count\na,1\n",
     "p.csv:1: the header has no 'prompt' column (columns: id, prompt, provider, model, "
     "aspect_ratio, image_size, count, images)"),
    ("prompt,prompt\na,b\n", "p.csv:1: column 'prompt' appears twice in the header"),
    ("", "p.csv:1: the first row must be a header naming the columns (id, prompt, provider, "
         "model, aspect_ratio, image_size, count, images)"),
    ("prompt,count\na,1\nb,three\n",
     "p.csv:3: count: must be a whole number from 1 to 100, got 'three'"),
    ("prompt,count\na,1\n\nb,0\n", "p.csv:4: count: must be a whole number from 1 to 100, got 0"),
    ("prompt,id\na,x\nb,c,d\n",
     "p.csv:3: this row has 3 cells but the header has 2 columns (quote cells that contain a "
     "comma)"),
    ("prompt,id\na,x\nb,../etc\n", f"p.csv:3: id: unsafe id '../etc': {ID_RULE}"),
    ("prompt,id\na,\n\"multi\nline\",x\nc,X\n",
     "p.csv:5: id: duplicate id 'X' (first used at p.csv:3; ids are compared ignoring case "
     "because they become file names)"),
    ("prompt,image_size\na,1k\n", "p.csv:2: image_size: '1k' needs an upper-case K: write '1K'"),
    ("prompt,images\na,refs/x.png;\n",
     "p.csv:2: images[0]: reference image 'refs/x.png' not found (looked for {tmp}/refs/x.png)"),
])
def test_csv_errors(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, text, "p.csv")
    write(tmp_path, "prompts_file: p.csv\n")
    assert error("m.yaml") == expected.replace("{tmp}", str(tmp_path.resolve()))


def test_jsonl_prompts_file(tmp_path: Path) -> None:
    lines = ['{"id": "a", "prompt": "first", "count": 2}', "", "   ",
             '{"prompt": "second", "images": ["refs/a.png"], "image_size": "2K"}']
    write(tmp_path, "\n".join(lines) + "\n", "p.ndjson")
    png(tmp_path / "refs" / "a.png")
    m = load_manifest(write(tmp_path, "prompts_file: p.ndjson\n"))
    assert [(i.id, i.count, i.image_size, i.line) for i in m.items] == [
        ("a", 2, None, 1), (derive_id("second"), 1, "2K", 4)]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"prompt": "a"}\n{"prompt": "b",}\n',
     "p.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 16)"),
    ('{"prompt": "a"}\n["b"]\n',
     'p.jsonl:2: each line must be a JSON object such as {"prompt": "..."}, got a list'),
    ('{"prompt": "a", "count": "3"}\n', "p.jsonl:1: count: must be a whole number from 1 to 100, "
                                       "got text '3'"),
    ('{"prompt": "a", "prompt": "b"}\n', "p.jsonl:1: duplicate key 'prompt'"),
    ('\n\n{"prompt": "a", "colour": "red"}\n',
     "p.jsonl:3: colour: unknown key 'colour'; allowed keys: id, prompt, provider, model, "
     "aspect_ratio, image_size, count, images"),
    ('{"id": "x"}\n', "p.jsonl:1: prompt: required: the text to generate an image from"),
    ('{"prompt": "a", "images": ["", "b.png"]}\n',
     "p.jsonl:1: images[0]: must be a path to an image file, got text ''"),
])
def test_jsonl_errors(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, text, "p.jsonl")
    write(tmp_path, "defaults: {provider: gemini}\nprompts_file: p.jsonl\n")
    got = error("m.yaml")
    assert got == expected


# Rows share their fields besides id and prompt, so the builder checks each combination once:
# a value equal in Python to one already checked (True == 1 == 1.0) is still checked itself.
@pytest.mark.parametrize(("fields", "expected"), [
    (('"count": 1', '"count": true'), "count: must be a whole number from 1 to 100, got true"),
    (('"count": 1', '"count": 1.0'), "count: must be a whole number from 1 to 100, got a number"),
    (('"aspect_ratio": "1:1"', '"aspect_ratio": "1:2"'), "aspect_ratio: aspect ratio '1:2' is "),
])
def test_a_row_like_the_one_before_is_still_checked_itself(
        tmp_path: Path, fields: tuple[str, str], expected: str) -> None:
    rows = [f'{{"prompt": "a", {fields[0]}}}', f'{{"prompt": "b", {fields[0]}}}',
            f'{{"prompt": "c", {fields[1]}}}']
    write(tmp_path, "\n".join(rows) + "\n", "p.jsonl")
    write(tmp_path, "prompts_file: p.jsonl\n")
    assert error("m.yaml").startswith(f"p.jsonl:3: {expected}")


def test_rows_that_share_their_other_fields_get_them_each(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    write(tmp_path, "id,prompt,aspect_ratio,count,images\nx,one,16:9,2,a.png\ny,two,16:9,2,a.png\n"
                    "z,three,,,\n", "p.csv")
    m = load_manifest(write(tmp_path, "defaults: {aspect_ratio: '4:3'}\nprompts_file: p.csv\n"))
    assert [(i.id, i.aspect_ratio, i.count, len(i.references), i.line) for i in m.items] == [
        ("x", "16:9", 2, 1, 2), ("y", "16:9", 2, 1, 3), ("z", "4:3", 1, 0, 4)]
    assert len({i.fingerprint for i in m.items}) == 3


def test_jsonl_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    write(tmp_path, "prompts_file: p.jsonl\n")
    assert error("m.yaml") == "p.jsonl:2: not UTF-8 text: invalid continuation byte"


def test_duplicate_ids_across_manifest_and_file(tmp_path: Path) -> None:
    write(tmp_path, "id,prompt\nx,b\nred,c\n", "p.csv")
    write(tmp_path, "prompts_file: p.csv\nprompts:\n  - id: red\n    prompt: a\n")
    assert error("m.yaml") == ("p.csv:3: id: duplicate id 'red' (first used at m.yaml:3; ids are "
                               "compared ignoring case because they become file names)")


def test_errors_from_defaults_point_at_the_manifest(tmp_path: Path) -> None:
    write(tmp_path, "prompt\na\n", "p.csv")
    write(tmp_path, "defaults:\n  model: gemini-2.5-flash-image\n  aspect_ratio: '21:9'\n"
                    "  image_size: 2K\nprompts_file: p.csv\n")
    assert error("m.yaml") == ("m.yaml:4: defaults.image_size: image size '2K' is not supported "
                               "by gemini-2.5-flash-image; use one of 1K")


@pytest.mark.parametrize(("text", "expected"), [
    ("prompts_file: nope.csv\n",
     "m.yaml:1: prompts_file: prompts file 'nope.csv' not found (looked for {tmp}/nope.csv)"),
    ("prompts_file: p.txt\n",
     "m.yaml:1: prompts_file: must name a .csv, .jsonl or .ndjson file, got 'p.txt'"),
    ("prompts_file: [p.csv]\n", "m.yaml:1: prompts_file: must be text, got a list ['p.csv']"),
])
def test_prompts_file_errors(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "x", "p.txt")
    assert fails(tmp_path, text) == expected.replace("{tmp}", str(tmp_path))


def test_prompts_file_is_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, "prompt,count\na,x\n", "sub/p.csv")
    write(tmp_path, "prompts_file: p.csv\n", "sub/m.yaml")
    expected = "sub/p.csv:2: count: must be a whole number from 1 to 100, got 'x'"
    assert error("sub/m.yaml") == expected


# ----------------------------------------------------------------------------- overrides


def test_apply_overrides_returns_a_new_manifest(example: Path, tmp_path: Path) -> None:
    m = load_manifest(example)
    o = apply_overrides(m, interval=Interval(1, 2), concurrency=9, out=Path("elsewhere"))
    assert o.pacing == PacingConfig(Interval(1, 2), 9)
    assert o.output == (tmp_path / "elsewhere").resolve()
    assert o.items == m.items
    assert m.pacing == PacingConfig(Interval(5, 10), 4)  # the original is untouched
    assert apply_overrides(m) == m


def test_provider_override_swaps_models_the_provider_cannot_serve(example: Path) -> None:
    m = load_manifest(example)
    to_openai = apply_overrides(m, provider="openai")
    assert {(i.provider, i.model) for i in to_openai.items} == {("openai", "gpt-image-1")}
    assert [i.fingerprint for i in to_openai.items] != [i.fingerprint for i in m.items]
    for provider in ("simulator", "vertex"):  # they serve Gemini models as they are
        moved = apply_overrides(m, provider=provider)
        assert {(i.provider, i.model) for i in moved.items} == {(provider, "gemini-3-pro-image")}
        assert provider in moved.providers
    back = apply_overrides(to_openai, provider="gemini")  # gpt-image-1 belongs to openai
    assert {(i.provider, i.model) for i in back.items} == {("gemini", "gemini-3-pro-image")}


def test_provider_override_errors(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "prompts:\n  - prompt: a\n"))
    with pytest.raises(UsageError, match="unknown provider 'azure'"):
        apply_overrides(m, provider="azure")
    with pytest.raises(UsageError, match="--concurrency must be at least 1"):
        apply_overrides(m, concurrency=0)


# -------------------------------------------------------------------- never a stack trace

def _load_or_manifest_error(path: str) -> None:
    """Load; a ManifestError is a fine outcome, any other exception fails the test."""
    with contextlib.suppress(ManifestError):
        load_manifest(path)


_KEYS = ["version", "output", "defaults", "providers", "pacing", "retry", "failover", "prompts",
         "prompts_file", "gemini", "vertex", "openai", "simulator", "id", "prompt", "provider",
         "model", "aspect_ratio", "image_size", "count", "images", "interval", "concurrency",
         "max_attempts", "initial_delay", "max_delay", "order", "trip_after", "probe_every",
         "api_key_env", "base_url", "timeout", "latency", "faults", "seed", "daily_quota",
         "project", "location", "x"]
_scalars = (st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True)
            | st.sampled_from(["1K", "1k", "4:3", "gemini", "openai", "5-10", "refs/a.png",
                               "../x", "gpt-image-1", "p.csv", "p.jsonl", "", "\x00"])
            | st.text(max_size=8))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner,
                                                                max_size=5),
    max_leaves=25,
)
_documents = st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(doc=_documents)
def test_any_mapping_is_a_manifest_or_a_manifest_error(tmp_path: Path, doc: dict) -> None:
    write(tmp_path, "prompt\nfrom the file\n", "p.csv")
    write(tmp_path, '{"prompt": "from the file"}\n', "p.jsonl")
    write(tmp_path, yaml.safe_dump(doc, allow_unicode=True))
    _load_or_manifest_error("m.yaml")


_yamlish = st.text(
    alphabet=st.sampled_from(list("abc:- \n\t[]{},&*!|>'\"#%@`?.0123456789K\\\x00\x85\ufeffé")),
    max_size=120,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(text=_yamlish)
def test_any_text_is_a_manifest_or_a_manifest_error(tmp_path: Path, text: str) -> None:
    for document in ("prompts:\n  - prompt: a\n" + text, text):
        (tmp_path / "m.yaml").write_bytes(document.encode("utf-8", "surrogatepass"))
        _load_or_manifest_error("m.yaml")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(csv_text=st.text(alphabet=st.sampled_from(list('ab,"\n\r;|1 \x00é')), max_size=80),
       jsonl=st.text(alphabet=st.sampled_from(list('{}[]":,ab 1\n')), max_size=80))
def test_any_prompts_file_is_rows_or_a_manifest_error(tmp_path: Path, csv_text: str,
                                                      jsonl: str) -> None:
    for name, body in (("p.csv", "prompt,id\n" + csv_text), ("p.jsonl", jsonl)):
        write(tmp_path, body, name)
        write(tmp_path, f"prompts_file: {name}\n")
        _load_or_manifest_error("m.yaml")


def test_each_provider_has_a_default_model(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, "prompts:\n  - prompt: a\n    provider: openai\n"
                                      "  - prompt: b\n    provider: vertex\n"))
    assert [(i.provider, i.model) for i in m.items] == [("openai", "gpt-image-1"),
                                                        ("vertex", "gemini-3-pro-image")]
    switched = apply_overrides(load_manifest(write(tmp_path, "prompts:\n  - prompt: a\n")),
                               provider="openai")
    assert switched.items[0].model == "gpt-image-1"


def test_openai_options_are_checked_and_passed_to_the_provider(tmp_path: Path) -> None:
    write(tmp_path, "providers:\n  openai: {quality: ultra}\nprompts:\n  - prompt: a\n")
    assert error("m.yaml") == ("m.yaml:2: providers.openai.quality: must be one of 'auto', "
                               "'low', 'medium' or 'high', got 'ultra'")
    m = load_manifest(write(tmp_path, "providers:\n  openai: {quality: high, background: opaque}"
                                      "\nprompts:\n  - prompt: a\n"))
    assert dict(m.providers["openai"].options) == {"quality": "high", "background": "opaque"}
    assert m.providers["openai"].timeout == 300
