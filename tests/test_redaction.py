"""One redaction for every text nbbatch shows or stores: every encoding of the key goes."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

import pytest

from nbbatch.errors import ProviderError
from nbbatch.providers import google, openai_answers
from nbbatch.redaction import MASK, Redactor

KEY = "gw-9f8e7d6c5b4a3210-ZYXWVUT/+=abc"  # a gateway key: no sk- or AIza shape to go by


def echoes(key: str) -> dict[str, str]:
    lower = quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b").replace("%3D", "%3d")
    return {
        "plain": key,
        "percent": quote(key, safe=""),
        "percent, lower-case": lower,
        "form": quote_plus(key),
        "html": html.escape(key),
        "base64": base64.b64encode(f"Basic user:{key}".encode()).decode(),
        "base64 url-safe": base64.urlsafe_b64encode(f"x{key}".encode()).decode(),
        "a long prefix": key[:16] + "...",
        "masked as OpenAI does": key[:8] + "*" * 20 + key[-4:],
        "a long middle part": "..." + key[5:25] + "...",
        "a long end": "..." + key[-14:],
    }


@pytest.mark.parametrize("form", list(echoes(KEY)))
def test_every_form_of_the_key_is_masked(form):
    text = f"the server said: {echoes(KEY)[form]} was refused"
    clean = Redactor([KEY])(text)
    assert MASK in clean
    assert KEY[:8] not in clean and KEY[-12:] not in clean
    assert not any(KEY[i:i + 12] in clean for i in range(len(KEY) - 11))
    assert "was refused" in clean


def test_short_runs_that_happen_to_be_in_the_key_stay():
    assert Redactor([KEY])("abc and 3210 and ZYX") == "abc and 3210 and ZYX"


def test_key_shaped_tokens_are_masked_whoever_they_belong_to():
    text = "Incorrect API key provided: sk-proj-abc***wxyz; also AIzaSyB1234567890abcdef"
    clean = Redactor([])(text)
    assert "wxyz" not in clean and "1234567890" not in clean


def test_keys_too_short_to_be_secret_do_not_mangle_text():
    assert Redactor(["x"])("You exceeded your current quota") == "You exceeded your current quota"


def test_message_redacts_before_it_shortens():
    text = "a" * 490 + KEY
    assert KEY[:10] not in Redactor([KEY]).message(text, limit=500)


def test_scrub_cleans_every_string_of_a_report():
    report = {"model": f"m {KEY}", "nested": [{"id": KEY}], "n": 3}
    clean = Redactor([KEY]).scrub(report)
    assert KEY not in json.dumps(clean) and clean["n"] == 3


# A gateway that echoes the caller's key in a page without JSON: the key must not survive in
# the message of either provider family, wherever the 200-character snippet cuts it.
PAGES = {
    "title-less HTML": lambda key: (b"<html><body><p>" + b"x" * 180 + key.encode()
                                    + b" is not a valid key</p></body></html>"),
    "plain text": lambda key: b"y" * 190 + key.encode() + b" rejected",
}


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("classify", [google.classify, openai_answers.classify],
                         ids=["google", "openai"])
def test_a_non_json_error_page_echoing_the_key_across_byte_200_leaks_nothing(page, classify):
    body = PAGES[page](KEY)
    assert body.index(KEY.encode()) < 200 < body.index(KEY.encode()) + len(KEY)
    with pytest.raises(ProviderError) as caught:
        classify(502, {}, body, provider="p", redact=Redactor([KEY]), model="m")
    message = caught.value.message
    assert "HTTP 502" in message
    for part in (KEY[:8], KEY[8:16], KEY[16:24], KEY[-8:]):
        assert part not in message
