"""Keys: refused before anything is sent when they cannot be keys, and never shown anywhere.

Every test hunts the key in everything a user or a log could see: the exit message, the
output, the ledger and every file of the output folder.
"""

from __future__ import annotations

import base64
import html
import io
from urllib.parse import quote

import httpx
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from nbbatch.cli import app
from nbbatch.errors import UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers import google, openai_answers, resolve_api_key
from nbbatch.redaction import Redactor, looks_like_a_key

KEY = "AIzaSyD-k3yK3yK3y-" + "Zq7x" * 5  # shaped like a Gemini key
SECOND_LINE = "created 2024-05-01 for the catalog"


def manifest(tmp_path, **provider):
    doc = {"version": 1, "output": "out",
           "providers": {"gemini": {"base_url": "http://127.0.0.1:9", **provider}},
           "prompts": [{"id": "a", "prompt": "a red shoe"}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def leaked(text: str, secret: str = KEY) -> bool:
    return any(secret[i:i + 10] in text for i in range(len(secret) - 9))


def everything_written(tmp_path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in tmp_path.rglob("*") if p.is_file() and p.name != "m.yaml")


@pytest.mark.parametrize(("value", "said"), [
    (f"{KEY}\n{SECOND_LINE}", "a line break (the value has more than one line)"),
    (f"{KEY}\r\n{SECOND_LINE}\n", "a line break"),
    (f"\u201c{KEY}\u201d", "non-ASCII character (U+201C LEFT DOUBLE QUOTATION MARK"),
    (f"{KEY}\u00a0", "non-ASCII character (U+00A0 NO-BREAK SPACE"),
    (f"{KEY[:10]} {KEY[10:]}", "a space"),
    (f"{KEY}\t", "a tab"),
    (f"{KEY}\x1b", "a control character (U+001B)"),
])
def test_a_key_that_cannot_be_sent_exits_2_before_any_request_naming_only_the_variable(
        tmp_path, monkeypatch, value, said):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", value)
    sent = []
    monkeypatch.setattr(httpx.AsyncClient, "send", lambda *a, **k: sent.append(a))
    result = CliRunner().invoke(app, ["run", str(manifest(tmp_path))])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: GEMINI_API_KEY cannot be an API key: it holds")
    assert said in result.stderr
    assert "Traceback" not in result.output and sent == []
    assert not leaked(result.output) and not leaked(everything_written(tmp_path))


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_one_trailing_line_break_is_forgiven(ending):
    config = ProviderConfig("gemini")
    assert resolve_api_key(config, {"GEMINI_API_KEY": KEY + ending}) == KEY


def test_a_variable_holding_only_line_breaks_is_not_set():
    with pytest.raises(UsageError, match="No API key for provider 'gemini'"):
        resolve_api_key(ProviderConfig("gemini"), {"GEMINI_API_KEY": "\n"})


@pytest.mark.parametrize("pasted", [
    KEY, "sk-proj-" + "a1B2c3D4" * 6, "sk-or-v1-" + "0f" * 32, "gw9F8e7D6c5B4a3Z2y1X0w",
    # one case only, and only letters, digits and _ (what a variable name may be)
    "sk_live_1234567890abcdefgh", "ghp_4f2a9c0d1e7b3a8f6c5d2e9b0a1f7c3d4e8b",
    "3f9a1c7e0b2d4f6a8c1e3b5d7f9a0c2e", "r8_Zx4kq9Vt2mN7pL3wR8yB1cF6hJ0sD5g",
])
def test_a_key_written_where_the_variable_name_goes_is_refused_unechoed(tmp_path, pasted):
    path = manifest(tmp_path, api_key_env=pasted)
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    assert "api_key_env: looks like an API key itself" in result.stderr
    assert "export GEMINI_API_KEY=... and write api_key_env: GEMINI_API_KEY" in result.stderr
    assert not leaked(result.output, pasted)


@pytest.mark.parametrize("name", ["GEMINI_API_KEY", "my_key_2", "OPENAI_KEY_FOR_PROJECT_2024",
                                  "CatalogGeminiKey", "GEMINIKEYPROJECT2024", "GEMINI_KEY_V2",
                                  "STAGING_OPENAI_API_KEY_FOR_CATALOG_2", "KEY_20240101"])
def test_variable_names_are_not_mistaken_for_keys(name):
    assert not looks_like_a_key(name)


# -- what a server sends back: every field that is kept or shown is redacted ------------------

GATEWAY_KEY = "gw-7a6b5c4d3e2f1a0b-QWERTYzxcv"  # no well-known shape: only the key tells it


def forms(key: str) -> list[str]:
    return [key, quote(key, safe=""), quote(key, safe="").lower(), html.escape(key),
            base64.b64encode(f"user:{key}".encode()).decode(), key[:14] + "...", repr(key)[1:-1]]


def png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("form", range(len(forms(GATEWAY_KEY))))
def test_a_success_echoing_the_key_in_any_form_keeps_none_of_it(form):
    echo = forms(GATEWAY_KEY)[form]
    redact = Redactor([GATEWAY_KEY])
    gemini = google.classify(200, {"x-request-id": echo}, _json({
        "candidates": [{"content": {"parts": [{"text": f"here {echo}"},
                                              {"inlineData": {"mimeType": "image/png",
                                                              "data": png()}}]}}],
        "modelVersion": f"m-{echo}", "responseId": echo,
        "usageMetadata": {"note": echo, "totalTokenCount": 1}}),
        provider="gemini", redact=redact)
    openai = openai_answers.classify(200, {"x-request-id": echo}, _json({
        "data": [{"b64_json": png(), "revised_prompt": f"a shoe {echo}"}],
        "usage": {"note": echo, "total_tokens": 3}}),
        provider="openai", redact=redact, model="gpt-image-1")
    for image in (gemini, openai):
        kept = f"{image.model} {image.usage} {image.request_id} {image.text}"
        assert not leaked(kept, GATEWAY_KEY), kept


def _json(doc) -> bytes:
    import json

    return json.dumps(doc).encode()
