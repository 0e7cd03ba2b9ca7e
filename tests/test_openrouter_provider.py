"""OpenRouterProvider and its classify against httpx.MockTransport (no network).

Error bodies are OpenRouter's envelope {"error": {"code", "message", "metadata"?}}, with
messages OpenRouter is known to send ("... is not a valid model ID", "Key limit exceeded").
"""

import asyncio
import base64
import io
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbbatch import catalog
from nbbatch.errors import (
    BlockedError,
    ExitCode,
    FatalError,
    InvalidRequestError,
    ProviderError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
    UsageError,
)
from nbbatch.model import ProviderConfig
from nbbatch.providers import create_provider, registry
from nbbatch.providers.base import (
    CheckUnavailable,
    GeneratedImage,
    ImageRequest,
    ReferenceImage,
)
from nbbatch.providers.openrouter import (
    OpenRouterProvider,
    attribution_headers,
    build_body,
    check_options,
    classify,
)
from nbbatch.providers.openrouter_answers import ImageLink
from nbbatch.providers.wire import redactor

KEY = "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
MODEL = "google/gemini-3-pro-image-preview"


def image_bytes(fmt="PNG", color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, fmt)
    return buffer.getvalue()


PNG, JPEG = image_bytes(), image_bytes("JPEG", "blue")
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
USAGE = {"prompt_tokens": 10, "completion_tokens": 1300, "total_tokens": 1310, "cost": 0.039}


def completion(images=None, content="Here is your image", **choice) -> dict:
    message = {"role": "assistant", "content": content}
    if images is not False:
        message["images"] = images or [{"type": "image_url", "image_url": {"url": DATA_URL}}]
    return {"id": "gen-123", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "message": message, **choice}],
            "usage": USAGE}  # fmt: skip


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion())


def run(coro_factory, handler, **config):
    seen: list[httpx.Request] = []

    def record(request: httpx.Request):
        request.read()
        seen.append(request)
        return handler(request)

    async def main():
        provider = OpenRouterProvider(ProviderConfig(name="openrouter", **config), KEY,
                                      transport=httpx.MockTransport(record))
        try:
            return await coro_factory(provider)
        except (ProviderError, CheckUnavailable) as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main()), seen


def generate(handler, request=None, **config):
    request = request or ImageRequest("a red fox in snow", MODEL)
    return run(lambda p: p.generate(request), handler, **config)


def run_classify(status, body, headers=None, model=MODEL):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return classify(status, headers or {}, body, provider="openrouter", redact=redactor(KEY),
                    model=model, key_env="OPENROUTER_API_KEY")


# --- The request ---------------------------------------------------------------------------


def test_request_url_headers_and_body():
    request = ImageRequest("a red fox in snow", MODEL, aspect_ratio="16:9", image_size="2K")
    result, [sent] = generate(ok, request, options={"referer": "https://me.example",
                                                     "title": "nbbatch run"})
    assert isinstance(result, GeneratedImage)
    assert (sent.method, str(sent.url)) == ("POST", "https://openrouter.ai/api/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["http-referer"] == "https://me.example"
    assert sent.headers["x-title"] == "nbbatch run"
    assert json.loads(sent.content) == {
        "model": MODEL, "messages": [{"role": "user", "content": "a red fox in snow"}],
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
    }


def test_defaults_send_no_image_config_and_no_attribution():
    _, [sent] = generate(ok, base_url="http://127.0.0.1:9/api/v1/")
    assert str(sent.url) == "http://127.0.0.1:9/api/v1/chat/completions"
    assert "http-referer" not in sent.headers and "x-title" not in sent.headers
    assert "image_config" not in json.loads(sent.content)


@pytest.mark.parametrize(("model", "size", "sent"), [
    (MODEL, "4K", "4K"), ("openai/gpt-image-1", "4K", None), ("someone/new-model", "2K", "2K"),
])
def test_image_size_goes_only_where_the_model_has_it(model, size, sent):
    body = build_body(ImageRequest("p", model, image_size=size))
    assert body.get("image_config", {}).get("image_size") == sent


def test_reference_images_are_data_url_parts_after_the_text():
    request = ImageRequest("put it on a street", MODEL, references=(
        ReferenceImage("image/png", PNG), ReferenceImage("image/jpeg", JPEG)))
    assert build_body(request)["messages"][0]["content"] == [
        {"type": "text", "text": "put it on a street"},
        {"type": "image_url", "image_url": {"url": DATA_URL}},
        {"type": "image_url", "image_url": {
            "url": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}},
    ]


@pytest.mark.parametrize("options", [{"title": "two\nlines"}, {"referer": ""}, {"title": 5}])
def test_bad_options_are_usage_errors(options):
    with pytest.raises(UsageError, match=r"providers\.openrouter"):
        OpenRouterProvider(ProviderConfig("openrouter", options=options), KEY)


def test_options_ignore_other_providers_keys_and_the_manifest_keeps_them_as_given():
    assert attribution_headers({"quality": "high"}) == {}
    assert check_options({"title": "t"}) == {"title": "t"}


def test_registry_builds_it_from_openrouter_api_key():
    with pytest.raises(UsageError, match="OPENROUTER_API_KEY"):
        create_provider(ProviderConfig("openrouter"), {})
    provider = create_provider(ProviderConfig("openrouter"), {"OPENROUTER_API_KEY": KEY})
    assert isinstance(provider, OpenRouterProvider)
    asyncio.run(provider.aclose())


# --- Success -------------------------------------------------------------------------------


def test_success_reads_the_data_url_usage_text_and_id():
    result, _ = generate(ok)
    assert result == GeneratedImage(data=PNG, mime_type="image/png", model=MODEL, usage=USAGE,
                                    request_id="gen-123", text="Here is your image")


def test_content_parts_are_the_fallback():
    parts = [{"type": "text", "text": "Here"},
             {"type": "image_url", "image_url": {"url": DATA_URL}}]
    result = run_classify(200, completion(images=False, content=parts))
    assert (result.data, result.text) == (PNG, "Here")


def test_a_bare_string_image_url_and_the_bytes_type_win():
    jpeg_url = "data:image/png;base64," + base64.b64encode(JPEG).decode()  # labelled png
    result = run_classify(200, completion(images=[{"image_url": jpeg_url}]))
    assert result.mime_type == "image/jpeg"


def test_a_link_is_downloaded_once_without_the_key():
    url = "https://cdn.example.invalid/img.png?sig=abc"

    def handler(request):
        if request.method == "POST":
            return httpx.Response(200, json=completion(images=[{"image_url": {"url": url}}]))
        return httpx.Response(200, content=PNG)

    result, seen = generate(handler)
    assert result.data == PNG and result.usage == USAGE
    assert [(r.method, str(r.url)) for r in seen][1] == ("GET", url)
    assert "authorization" not in seen[1].headers
    assert isinstance(run_classify(200, completion(images=[{"image_url": {"url": url}}])),
                      ImageLink)


def test_a_failed_download_is_transient_and_possibly_billed():
    url = "https://cdn.example.invalid/img.png"

    def handler(request):
        if request.method == "POST":
            return httpx.Response(200, json=completion(images=[{"image_url": {"url": url}}]))
        return httpx.Response(403, text="expired")

    error, _ = generate(handler)
    assert type(error) is TransientError and error.possibly_billed and "HTTP 403" in error.message


def test_the_reported_cost_is_what_the_image_costs():
    listed = catalog.price(MODEL, image_size="1K")
    assert catalog.reported_cost_usd(USAGE) == 0.039
    assert catalog.image_cost(MODEL, USAGE, listed) == 0.039
    assert catalog.image_cost(MODEL, {"total_tokens": 5}, listed) == 0.134
    assert catalog.image_cost("someone/new-model", USAGE, 0.0) == 0.039  # no list price
    for bad in ({"cost": True}, {"cost": "0.1"}, {"cost": -1}, {"cost": float("inf")}, {}):
        assert catalog.reported_cost_usd(bad) is None


def test_usage_keeps_numbers_only():
    body = completion()
    body["usage"] = {**USAGE, "note": f"key {KEY}", "details": {"image_tokens": 1290, "x": "y"}}
    result = run_classify(200, body)
    assert result.usage == {**USAGE, "details": {"image_tokens": 1290}}


# --- Every answer of the reference -----------------------------------------------------------


def err(code, message="m", **metadata):
    doc = {"code": code, "message": message}
    if metadata:
        doc["metadata"] = metadata
    return {"error": doc}


MODERATION = err(403, 'openai/gpt-image-1 requires moderation on OpenAI. Your input was '
                 'flagged for "violence".', reasons=["violence"], flagged_input="a knife fight",
                 provider_name="OpenAI", model_slug="openai/gpt-image-1")
KEY_LIMIT = err(403, "Key limit exceeded (monthly limit). Manage it using "
                "https://openrouter.ai/settings/keys")
NOT_A_MODEL = {"error": {"message": "google/gemini-9-image is not a valid model ID",
                         "code": 400}, "user_id": "user_2x7DNyswjOHVRWDYVMCIROyGjsS"}
UPSTREAM_429 = {"error": {"message": "Provider returned error", "code": 429, "metadata": {
    "raw": '{"error":{"message":"Rate limit exceeded","type":"rate_limit_exceeded"}}',
    "provider_name": "SambaNova"}}}
MID_STREAM = {"id": "gen-9", "object": "chat.completion", "choices": [],
              "error": {"code": 502, "message": "Provider returned error",
                        "metadata": {"provider_name": "Google", "raw": "connection reset"}}}
CASES = [
    # status, body, headers, error class, attributes
    (400, err(400, "Input required: specify \"prompt\" or \"messages\""), {},
     InvalidRequestError, {}),
    (400, NOT_A_MODEL, {}, UnknownModelError, {}),
    (401, err(401, "No auth credentials found"), {}, FatalError, {}),
    (401, err(401, "User not found."), {}, FatalError, {}),
    (402, err(402, "Insufficient credits. Add more using https://openrouter.ai/credits"), {},
     QuotaExhaustedError, {}),
    (403, MODERATION, {}, BlockedError, {}),
    (403, err(403, "Blocked by a guardrail"), {}, BlockedError, {}),
    (403, KEY_LIMIT, {}, QuotaExhaustedError, {}),
    (404, err(404, "No endpoints found that support image output"), {}, UnknownModelError, {}),
    (408, err(408, "Timed out"), {}, TransientError, {"overload": False}),
    (429, err(429, "Rate limit exceeded"), {"retry-after": "30"}, TransientError,
     {"overload": True, "retry_after": 30.0}),
    (429, UPSTREAM_429, {}, TransientError, {"overload": True, "retry_after": None}),
    (500, err(500, "Internal Server Error"), {}, TransientError, {"overload": False}),
    (502, err(502, "Provider returned error"), {}, TransientError, {"overload": True}),
    (503, err(503, "No allowed providers are available for the selected model."),
     {"retry-after": "4"}, TransientError, {"overload": True, "retry_after": 4.0}),
    (502, b"<html><title>502 Bad Gateway</title></html>", {}, TransientError, {}),
    (413, b"", {}, InvalidRequestError, {}),
    (200, MID_STREAM, {}, TransientError, {"overload": True, "possibly_billed": True}),
    (200, {"error": {"code": 402, "message": "out of credits"}}, {}, QuotaExhaustedError, {}),
    (200, {"error": {"code": 403, "message": "flagged"}}, {}, BlockedError, {}),
    (200, {"error": "something broke"}, {}, TransientError, {}),
    (200, completion(error={"code": 503, "message": "upstream down"}), {}, TransientError,
     {"overload": True}),  # an error on the choice itself
    (302, b"", {"location": "https://elsewhere.invalid/"}, FatalError, {}),
]


@pytest.mark.parametrize(("status", "body", "headers", "cls", "attrs"), CASES)
def test_error_outcomes(status, body, headers, cls, attrs):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body, {**headers, "x-request-id": "req_7"})
    error = caught.value
    assert type(error) is cls
    assert (error.provider, error.status) == ("openrouter", status)
    for name, value in attrs.items():
        assert getattr(error, name) == value, name
    assert KEY not in error.message


def test_messages_carry_the_reasons_and_the_upstream():
    with pytest.raises(BlockedError) as blocked:
        run_classify(403, MODERATION)
    assert "(flagged for: violence)" in blocked.value.message
    assert "[OpenAI]" in blocked.value.message
    with pytest.raises(TransientError) as upstream:
        run_classify(429, UPSTREAM_429)
    assert "SambaNova" in upstream.value.message and "Rate limit exceeded" in upstream.value.message
    with pytest.raises(FatalError) as auth:
        run_classify(401, err(401, "User not found."))
    assert auth.value.message == ("API key rejected (HTTP 401): User not found. Check "
                                  "OPENROUTER_API_KEY.")
    assert auth.value.exit_code == ExitCode.AUTH


@pytest.mark.parametrize(("body", "cls", "says", "billed"), [
    (completion(images=False, content="I can't draw that, but here is a poem."), TransientError,
     "(the model answered with text only): I can't draw that", False),
    (completion(images=False, content=None), TransientError, "no message", False),
    ({"id": "gen-1", "choices": []}, TransientError, "no message", False),
    (completion(images=False, content="no", finish_reason="content_filter"), BlockedError,
     "refused the image (content_filter)", False),
    (completion(images=False, content=None, native_finish_reason="IMAGE_SAFETY"), BlockedError,
     "IMAGE_SAFETY", False),
    (completion(images=[{"image_url": {"url": "data:image/png;base64,!!!"}}]), TransientError,
     "not valid base64", True),
    (completion(images=[{"image_url": {"url": "data:image/png,rawbytes"}}]), TransientError,
     "not base64", True),
    (completion(images=[{"image_url": {"url": "data:image/png;base64,"
                                              + base64.b64encode(b"nope").decode()}}]),
     TransientError, "not an image", True),
    (b'{"id": "gen-1", "choices": [{"message": {"images": [{"image_url": {"url": "data:ima',
     TransientError, "truncated or invalid JSON", True),
    (b"<html><title>Cloudflare</title></html>", TransientError, "HTML page", False),
])  # fmt: skip
def test_a_200_without_an_image(body, cls, says, billed):
    with pytest.raises(cls) as caught:
        run_classify(200, body)
    assert says in caught.value.message
    assert getattr(caught.value, "possibly_billed", False) is billed


@pytest.mark.parametrize(("status", "body"), [
    (401, err(401, f"bad key {KEY}")),
    (400, err(400, "x" * 480 + KEY)),  # the key straddles the cut: redacted first
    (500, f"proxy error for key {KEY}".encode()),
    (403, err(403, "key sk-or-v1-au7...890 flagged")),
    (429, err(429, "limited", raw=f"upstream saw {KEY}")),
])
def test_key_never_appears_in_messages(status, body):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body)
    assert KEY[:12] not in caught.value.message and len(caught.value.message) <= 560
    assert "sk-or-v1-au7" not in caught.value.message


# --- Pre-flight ----------------------------------------------------------------------------

KEY_INFO = {"data": {"label": "sk-or-v1-au7...890", "limit": 100, "limit_remaining": 74.5,
                     "usage": 25.5, "is_free_tier": False}}
ENDPOINTS = {"data": {"id": MODEL, "architecture": {"input_modalities": ["text", "image"],
                                                    "output_modalities": ["image", "text"]},
                      "endpoints": [{"provider_name": "Google", "status": 0}]}}


def metadata(key=(200, KEY_INFO), model=(200, ENDPOINTS)):
    def handler(request):
        status, body = key if request.url.path.endswith("/key") else model
        return httpx.Response(status, **({"content": body} if isinstance(body, bytes)
                                         else {"json": body}))
    return handler


def test_check_asks_for_the_key_then_the_model():
    result, seen = run(lambda p: p.check(MODEL), metadata())
    assert result is None
    assert [(r.method, str(r.url)) for r in seen] == [
        ("GET", "https://openrouter.ai/api/v1/key"),
        ("GET", "https://openrouter.ai/api/v1/models/google/gemini-3-pro-image-preview/endpoints"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in seen)


TEXT_ONLY = {"data": {"id": "x/y", "architecture": {"output_modalities": ["text"]},
                      "endpoints": [{}]}}


@pytest.mark.parametrize(("handler", "model", "cls", "says"), [
    (metadata(key=(401, err(401, "User not found."))), MODEL, FatalError, "OPENROUTER_API_KEY"),
    (metadata(key=(401, b"")), MODEL, FatalError, "API key rejected (HTTP 401)"),
    (metadata(key=(403, err(403, "This key is disabled"))), MODEL, FatalError,
     "not allowed (HTTP 403): This key is disabled Check OPENROUTER_API_KEY."),
    (metadata(key=(200, {"data": {"limit_remaining": 0}})), MODEL, QuotaExhaustedError,
     "spending limit"),
    (metadata(model=(404, err(404, "Model not found"))), MODEL, UnknownModelError,
     "Model not found"),
    (metadata(model=(200, TEXT_ONLY)), "x/y", UnknownModelError, "does not make images"),
    # No usable answer: the run sends one request alone instead.
    (metadata(model=(200, {"data": {"id": MODEL, "endpoints": []}})), MODEL, CheckUnavailable,
     "no OpenRouter provider serves"),
    (metadata(key=(404, b"<html>Not Found</html>")), MODEL, CheckUnavailable,
     "no metadata route"),
    (metadata(key=(405, b"")), MODEL, CheckUnavailable, "HTTP 405"),
    (metadata(model=(404, b"Not Found")), MODEL, CheckUnavailable, "no metadata route"),
    (metadata(key=(503, err(503, "down"))), MODEL, CheckUnavailable, "down"),
    (metadata(key=(200, b'{"data": {"lim')), MODEL, CheckUnavailable, "truncated"),
    (metadata(), "gpt-image-1", CheckUnavailable, "not a vendor/model id"),
])  # fmt: skip
def test_check_outcomes(handler, model, cls, says):
    error, _ = run(lambda p: p.check(model), handler)
    assert type(error) is cls and says in str(error)


def test_catalog_knows_a_few_openrouter_models():
    assert registry.default_model("openrouter") == MODEL
    for model in (MODEL, "google/gemini-2.5-flash-image", "openai/gpt-image-1"):
        assert catalog.lookup(model).family == "openrouter"
        assert catalog.price(model) > 0


# --- Property: any JSON, any status -> an image, a link, or a ProviderError -------------------

LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from([DATA_URL, "image_url", "content_filter", "IMAGE_SAFETY", KEY, "", 402,
                       403, 429])
)  # fmt: skip
KEYS = ["error", "code", "message", "metadata", "reasons", "raw", "choices", "message",
        "images", "image_url", "url", "content", "type", "finish_reason", "usage", "cost"]
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 599) | st.sampled_from([200, 402, 403, 429]), doc=JSON)
def test_any_json_gives_an_image_a_link_or_a_provider_error(status, doc):
    try:
        result = run_classify(status, doc)
    except ProviderError as error:
        assert isinstance(error.message, str) and KEY not in error.message
        assert error.provider == "openrouter" and error.status == status
    else:
        assert isinstance(result, GeneratedImage | ImageLink)
        assert not isinstance(result, GeneratedImage) or result.data == PNG


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=200))
def test_any_bytes_give_a_provider_error(status, body):
    with pytest.raises(ProviderError):
        run_classify(status, body)
