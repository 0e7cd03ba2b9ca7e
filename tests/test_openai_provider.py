"""OpenAIProvider and openai.classify against httpx.MockTransport (no network).

Error bodies are the verbatim server output quoted in shared/reference/openai-and-other-apis.md
§2.1 wherever the reference gives one.
"""

import asyncio
import base64
import email.parser
import email.policy
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
from nbbatch.providers import openai_answers, openai_requests, registry
from nbbatch.providers.base import GeneratedImage, ImageRequest, ReferenceImage
from nbbatch.providers.openai import OpenAIProvider
from nbbatch.providers.openai_answers import ImageLink, classify
from nbbatch.providers.openai_requests import build_generation_body, size_for
from nbbatch.providers.openai_requests import settle_options as check_options
from nbbatch.providers.wire import post_multipart, redactor

KEY = "sk-proj-TESTkey_0123456789abcdefghijklmnopqrstuvwxyzABCD"
MODEL = "gpt-image-1"


def image_bytes(fmt="PNG", color="red", size=(4, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


PNG, JPEG = image_bytes(), image_bytes("JPEG", "blue")
USAGE = {"input_tokens": 50, "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
         "output_tokens": 1056, "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
         "total_tokens": 1106}  # fmt: skip


def success_body(data: bytes = PNG, **extra) -> dict:
    return {"created": 1713833628, "data": [{"b64_json": base64.b64encode(data).decode()}],
            "background": "opaque", "output_format": "png", "quality": "medium",
            "size": "1024x1024", "usage": USAGE, **extra}  # fmt: skip


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=success_body(), headers={"x-request-id": "req_abc123"})


def generate(handler, request=None, key=KEY, **config):
    """Run one generate() through a MockTransport; returns (result or error, requests seen)."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request):
        await request.aread()
        seen.append(request)
        response = handler(request)
        return await response if asyncio.iscoroutine(response) else response

    async def main():
        provider = OpenAIProvider(ProviderConfig(name="openai", **config), key,
                                  transport=httpx.MockTransport(record))
        try:
            return await provider.generate(request or ImageRequest("a red fox in snow", MODEL))
        except ProviderError as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main()), seen


def form_parts(request: httpx.Request) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name, content type, bytes) of each multipart part, in order."""
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()]  # fmt: skip


def run_classify(status, body, headers=None, model=MODEL):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return classify(status, headers or {}, body, provider="openai", redact=redactor(KEY),
                    model=model, key_env="OPENAI_API_KEY")


# --- The request ---------------------------------------------------------------------------


def test_generation_request_url_headers_and_body():
    options = {"quality": "high", "background": "transparent", "output_format": "webp",
               "moderation": "low", "organization": "org-123", "project": "proj_456"}
    request = ImageRequest("a red fox in snow", "gpt-image-1.5", aspect_ratio="16:9",
                           image_size="4K")
    result, seen = generate(ok, request, options=options)

    assert isinstance(result, GeneratedImage)
    [sent] = seen
    assert (sent.method, str(sent.url)) == ("POST", "https://api.openai.com/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["openai-organization"] == "org-123"
    assert sent.headers["openai-project"] == "proj_456"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "model": "gpt-image-1.5", "prompt": "a red fox in snow", "n": 1, "size": "1536x1024",
        "quality": "high", "output_format": "webp", "background": "transparent",
        "moderation": "low",
    }  # image_size has no OpenAI equivalent: it is not sent


def test_generation_defaults_and_no_optional_headers():
    _, seen = generate(ok, base_url="http://127.0.0.1:9/v1/")
    [sent] = seen
    assert str(sent.url) == "http://127.0.0.1:9/v1/images/generations"
    assert "openai-organization" not in sent.headers and "openai-project" not in sent.headers
    assert json.loads(sent.content) == {
        "model": MODEL, "prompt": "a red fox in snow", "n": 1, "size": "auto",
        "quality": "auto", "output_format": "png", "background": "auto",
    }


@pytest.mark.parametrize(("model", "quality", "expected"), [
    ("dall-e-3", "high", {"model": "dall-e-3", "prompt": "p", "n": 1, "size": "1792x1024",
                          "quality": "hd", "response_format": "b64_json"}),
    ("dall-e-3", "auto", {"model": "dall-e-3", "prompt": "p", "n": 1, "size": "1792x1024",
                          "quality": "standard", "response_format": "b64_json"}),
    ("dall-e-2", "high", {"model": "dall-e-2", "prompt": "p", "n": 1, "size": "1024x1024",
                          "response_format": "b64_json"}),
])  # fmt: skip
def test_dall_e_bodies_carry_only_what_dall_e_accepts(model, quality, expected):
    request = ImageRequest("p", model, aspect_ratio="16:9")
    options = check_options({"quality": quality, "moderation": "low"})
    assert build_generation_body(request, options) == expected


def test_reference_images_make_a_multipart_edit():
    request = ImageRequest("put it on a neon street", "gpt-image-1", aspect_ratio="2:3",
                           references=(ReferenceImage("image/png", PNG),
                                       ReferenceImage("image/jpeg", JPEG)))
    options = {"quality": "low", "moderation": "low", "input_fidelity": "high",
               "organization": "org-1"}
    result, seen = generate(ok, request, options=options)

    assert isinstance(result, GeneratedImage)
    [sent] = seen
    assert str(sent.url) == "https://api.openai.com/v1/images/edits"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(sent.headers["content-length"]) == len(sent.content)
    parts = form_parts(sent)
    fields = {name: data.decode() for name, filename, _, data in parts if filename is None}
    assert fields == {"model": "gpt-image-1", "prompt": "put it on a neon street", "n": "1",
                      "size": "1024x1536", "quality": "low", "output_format": "png",
                      "background": "auto", "input_fidelity": "high"}  # no moderation: edits
    files = [(name, filename, ctype, data) for name, filename, ctype, data in parts if filename]
    assert files == [("image[]", "image-1.png", "image/png", PNG),
                     ("image[]", "image-2.jpg", "image/jpeg", JPEG)]


def test_mini_gets_no_input_fidelity_and_dall_e_2_edits_one_image():
    ref = ReferenceImage("image/png", PNG)
    options = {"input_fidelity": "high"}
    _, seen = generate(ok, ImageRequest("p", "gpt-image-1-mini", references=(ref,)),
                       options=options)
    assert "input_fidelity" not in {name for name, *_ in form_parts(seen[0])}

    _, seen = generate(ok, ImageRequest("p", "dall-e-2", references=(ref,)))
    parts = form_parts(seen[0])
    assert ("image", "image-1.png", "image/png", PNG) in parts
    assert {n: d.decode() for n, f, _, d in parts if f is None}["response_format"] == "b64_json"


@pytest.mark.parametrize(("model", "refs", "says"), [
    ("dall-e-3", 1, "cannot edit"), ("dall-e-2", 2, "exactly one"),
])
def test_impossible_edits_fail_before_sending(model, refs, says):
    request = ImageRequest("p", model, references=(ReferenceImage("image/png", PNG),) * refs)
    error, seen = generate(ok, request)
    assert type(error) is InvalidRequestError and says in error.message
    assert error.provider == "openai" and seen == []


@pytest.mark.parametrize(("model", "ratio", "size"), [
    ("gpt-image-1", None, "auto"), ("gpt-image-1", "1:1", "1024x1024"),
    ("gpt-image-1", "16:9", "1536x1024"), ("gpt-image-1", "4:3", "1536x1024"),
    ("gpt-image-1", "5:4", "1536x1024"), ("gpt-image-1", "21:9", "1536x1024"),
    ("gpt-image-1", "9:16", "1024x1536"), ("gpt-image-1", "3:4", "1024x1536"),
    ("gpt-image-1", "10:11", "1024x1024"), ("gpt-image-1-mini", "2:3", "1024x1536"),
    ("some-gateway-model", "3:2", "1536x1024"),
    ("dall-e-3", None, "1024x1024"), ("dall-e-3", "16:9", "1792x1024"),
    ("dall-e-3", "5:4", "1024x1024"), ("dall-e-3", "9:16", "1024x1792"),
    ("dall-e-2", "16:9", "1024x1024"),
])  # fmt: skip
def test_size_is_the_models_size_nearest_to_the_ratio(model, ratio, size):
    assert size_for(model, ratio) == size


def test_every_catalog_ratio_maps_to_a_size():
    for info in catalog.MODELS.values():
        if info.family == "openai":
            for ratio in info.aspect_ratios:
                assert "x" in size_for(info.id, ratio)


def test_malformed_ratio_is_invalid():
    with pytest.raises(InvalidRequestError):
        size_for(MODEL, "wide")


@pytest.mark.parametrize(("options", "says"), [
    ({"quality": "ultra"}, "providers.openai.quality"),
    ({"output_format": "gif"}, "providers.openai.output_format"),
    ({"background": "transparent", "output_format": "jpeg"}, "transparent needs"),
    ({"organization": ""}, "providers.openai.organization"),
])
def test_bad_options_are_usage_errors(options, says):
    with pytest.raises(UsageError, match=says):
        OpenAIProvider(ProviderConfig("openai", options=options), KEY,
                       transport=httpx.MockTransport(ok))


def test_check_options_fills_defaults_and_ignores_other_keys():
    assert check_options({"latency": 3}) == {"quality": "auto", "background": "auto",
                                             "output_format": "png"}


# --- Success -------------------------------------------------------------------------------


def test_success_reads_the_image_usage_and_request_id():
    result, _ = generate(ok)
    assert result == GeneratedImage(data=PNG, mime_type="image/png", model=MODEL, usage=USAGE,
                                    request_id="req_abc123")


def test_mime_type_follows_the_bytes_not_the_label():
    result = run_classify(200, success_body(JPEG, output_format="png"))
    assert result.mime_type == "image/jpeg" and result.data == JPEG


def test_dall_e_3_revised_prompt_is_kept_as_text():
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode(),
                                    "revised_prompt": "A vivid fox"}]}
    result = run_classify(200, body, model="dall-e-3")
    assert (result.text, result.usage, result.request_id) == ("A vivid fox", {}, None)


def test_url_answer_is_downloaded_once_without_the_key():
    url = "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png?sig=abc"

    def handler(request):
        if request.method == "POST":
            return httpx.Response(200, json={"created": 1, "data": [{"url": url}]},
                                  headers={"x-request-id": "req_1"})
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    result, seen = generate(handler, ImageRequest("p", "dall-e-3"))
    assert result.data == PNG and result.request_id == "req_1"
    assert [(r.method, str(r.url)) for r in seen] == [
        ("POST", "https://api.openai.com/v1/images/generations"), ("GET", url)]
    assert "authorization" not in seen[1].headers


def test_b64_is_preferred_over_url():
    body = success_body()
    body["data"][0]["url"] = "https://example.invalid/x.png"
    result, seen = generate(lambda r: httpx.Response(200, json=body))
    assert result.data == PNG and len(seen) == 1


@pytest.mark.parametrize(("download", "says"), [
    (lambda r: httpx.Response(404, text="gone"), "HTTP 404"),
    (lambda r: httpx.Response(200, content=b"<html>expired</html>"), "not an image"),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "could not connect"),
])
def test_failed_download_is_transient_and_possibly_billed(download, says):
    def handler(request):
        if request.method == "POST":
            return httpx.Response(200, json={"created": 1, "data": [{"url": "https://x.invalid/i"}]})
        return download(request)

    error, _ = generate(handler, ImageRequest("p", "dall-e-3"))
    assert type(error) is TransientError and says in error.message
    assert error.possibly_billed and error.provider == "openai"


def test_non_http_image_url_is_not_fetched():
    body = {"created": 1, "data": [{"url": "file:///etc/passwd"}]}
    error, seen = generate(lambda r: httpx.Response(200, json=body))
    assert type(error) is TransientError and "not http(s)" in error.message
    assert len(seen) == 1


def test_classify_returns_a_url_for_the_provider_to_fetch():
    result = run_classify(200, {"created": 1, "data": [{"url": "https://x.invalid/a.png"}]},
                          headers={"x-request-id": "req_9"}, model="dall-e-2")
    assert result == ImageLink("https://x.invalid/a.png", "dall-e-2", {}, "req_9", None)


# --- Errors: the reference's table, verbatim bodies where it gives them -----------------------

RATE_LIMIT = {"error": {"code": "rate_limit_exceeded", "message": "Rate limit exceeded for images per minute in organization org-XXXX. Limit: 0/1min. Current: 1/1min. Please visit https://platform.openai.com/docs/guides/rate-limits to learn how to increase your rate limit.", "param": None, "type": "requests"}}  # noqa: E501
QUOTA = {"error": {"message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}  # noqa: E501
HARD_LIMIT = {"error": {"code": "billing_hard_limit_reached", "message": "Billing hard limit has been reached", "param": None, "type": "invalid_request_error"}}  # noqa: E501
POLICY = {"error": {"code": "content_policy_violation", "message": "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.", "param": None, "type": "invalid_request_error"}}  # noqa: E501
POLICY_REVISED = {"error": {"code": "content_policy_violation", "message": "Your request was rejected as a result of our safety system. Image descriptions generated from your prompt may contain text that is not allowed by our safety system. If you believe this was done in error, your request may succeed if retried, or by adjusting your prompt.", "param": None, "type": "invalid_request_error"}}  # noqa: E501
MODERATION = {"error": {"message": "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID 5f0c1c1e-0000-4000-8000-000000000000. safety_violations=[sexual].", "type": "image_generation_user_error", "param": None, "code": "moderation_blocked", "moderation_details": {"moderation_stage": "output", "categories": ["sexual"]}}}  # noqa: E501
SERVER_ERROR = {"error": {"message": "The server had an error processing your request. Sorry about that! You can retry your request, or contact us through our help center at help.openai.com if you keep seeing this error. (Please include the request ID req_abc in your email.)", "type": "server_error", "param": None, "code": None}}  # noqa: E501
SERVER_ERROR_NEW = {"error": {"message": "An error occurred while processing your request. You can retry your request, or contact us through our help center at help.openai.com if the error persists.", "type": "server_error", "param": None, "code": "server_error"}}  # noqa: E501
BAD_SIZE = {"error": {"message": "Invalid value: '1254x836'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.", "type": "invalid_request_error", "param": "size", "code": "invalid_value"}}  # noqa: E501
DALL_E_GONE = {"error": {"message": "The model `dall-e-3` has been deprecated. Learn more: https://platform.openai.com/docs/deprecations", "type": "invalid_request_error", "code": "model_not_found"}}  # noqa: E501
BAD_KEY = {"error": {"message": "Incorrect API key provided: sk-proj-********************************************ABCD. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}  # noqa: E501


def err(code, type_="invalid_request_error", message="m"):
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


RA = {"retry-after": "20"}
RATE_LIMIT_5 = {"error": {**RATE_LIMIT["error"], "message": RATE_LIMIT["error"]["message"]
                          .replace("Limit: 0/1min", "Limit: 5/1min")}}
CASES = [
    # status, body, headers, error class, attributes
    (429, RATE_LIMIT_5, RA, TransientError, {"overload": True, "retry_after": 20.0}),
    # "Limit: 0/1min": the account has no quota for this model at all; waiting is useless.
    (429, RATE_LIMIT, RA, QuotaExhaustedError, {}),
    (429, err("slow_down", "rate_limit_error"), {}, TransientError, {"overload": True}),
    (429, err("server_is_overloaded", "service_unavailable_error"), {}, TransientError,
     {"overload": True}),
    (503, err("slow_down", "service_unavailable_error"), {}, TransientError, {"overload": True}),
    (429, err(None, "requests"), {}, TransientError, {"overload": True}),
    (429, QUOTA, RA, QuotaExhaustedError, {}),
    (429, err("credit_balance_exhausted", "insufficient_quota"), {}, QuotaExhaustedError, {}),
    (429, err("organization_spend_limit_exceeded", "insufficient_quota"), {},
     QuotaExhaustedError, {}),
    (429, err("project_spend_limit_exceeded", "insufficient_quota"), {}, QuotaExhaustedError, {}),
    (429, err("organization_usage_limit_exceeded", "insufficient_quota"), {},
     QuotaExhaustedError, {}),
    (400, HARD_LIMIT, {}, QuotaExhaustedError, {}),
    (400, POLICY, {}, BlockedError, {}),
    (400, POLICY_REVISED, {}, BlockedError, {}),
    (400, MODERATION, {}, BlockedError, {}),
    (400, BAD_SIZE, {}, InvalidRequestError, {}),
    (400, err("unknown_parameter"), {}, InvalidRequestError, {}),
    (422, err(None), {}, InvalidRequestError, {}),
    (413, b"<html><title>413 Request Entity Too Large</title></html>", {}, InvalidRequestError,
     {}),
    (404, DALL_E_GONE, {}, UnknownModelError, {}),
    (400, DALL_E_GONE, {}, UnknownModelError, {}),  # the status is unverified
    (404, b"", {}, UnknownModelError, {}),
    (401, BAD_KEY, {}, FatalError, {}),
    (403, b"", {}, FatalError, {}),
    (403, err("unsupported_country_region_territory", "request_forbidden"), {}, FatalError, {}),
    (408, err(None, "server_error"), {}, TransientError, {"overload": False}),
    (409, err(None), {}, TransientError, {"overload": False}),
    (500, SERVER_ERROR, {}, TransientError, {"overload": False}),
    (500, SERVER_ERROR_NEW, {}, TransientError, {"overload": False}),
    (502, b"<html><head><title>502 Bad Gateway</title></head></html>", {}, TransientError,
     {"overload": True}),
    (503, b"", {"retry-after": "7"}, TransientError, {"overload": True, "retry_after": 7.0}),
    (504, b"<html><head><title>504 Gateway Time-out</title></head></html>", {}, TransientError,
     {"overload": False}),
    (429, b"error code: 1015", {"content-type": "text/plain", "retry-after": "54749"},
     TransientError, {"overload": True, "retry_after": 54749.0}),
    (500, SERVER_ERROR, {"x-should-retry": "false"}, InvalidRequestError, {}),
    (503, b"", {"x-should-retry": "false"}, InvalidRequestError, {}),
    (400, err(None), {"x-should-retry": "true"}, TransientError, {"overload": False}),
    (500, SERVER_ERROR, {"x-should-retry": "true"}, TransientError, {}),
    (302, b"", {"location": "https://elsewhere.invalid/"}, FatalError, {}),
    (200, QUOTA, {}, QuotaExhaustedError, {}),  # a gateway wrapping an error in a 200
    (200, err(None, "server_error"), {}, TransientError, {}),
]


@pytest.mark.parametrize(("status", "body", "headers", "cls", "attrs"), CASES)
def test_error_outcomes(status, body, headers, cls, attrs):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body, {**headers, "x-request-id": "req_7"})
    error = caught.value
    assert type(error) is cls
    assert (error.provider, error.status, error.request_id) == ("openai", status, "req_7")
    for name, value in attrs.items():
        assert getattr(error, name) == value, name
    assert KEY not in error.message and "sk-proj-****" not in error.message


def test_quota_and_auth_exit_codes():
    with pytest.raises(QuotaExhaustedError) as quota:
        run_classify(429, QUOTA)
    assert quota.value.exit_code == ExitCode.TEMPFAIL
    assert "insufficient_quota" in quota.value.message
    with pytest.raises(UnknownModelError) as unknown:
        run_classify(404, DALL_E_GONE, model="dall-e-3")
    assert unknown.value.exit_code == ExitCode.USAGE
    assert "shut down on 2026-05-12" in unknown.value.message


def test_rejected_key_says_which_variable_and_hides_the_echo():
    error, _ = generate(lambda r: httpx.Response(401, json=BAD_KEY), api_key_env="MY_OPENAI_KEY")
    assert type(error) is FatalError and error.exit_code == ExitCode.AUTH
    assert error.message.startswith("API key rejected (HTTP 401): Incorrect API key provided: ")
    assert error.message.endswith("Check MY_OPENAI_KEY.")
    assert "sk-proj-" not in error.message and "ABCD" not in error.message


def test_cloudflare_block_says_what_it_is():
    with pytest.raises(TransientError) as caught:
        run_classify(429, b"error code: 1015", {"retry-after": "54749"})
    assert "error code: 1015" in caught.value.message


def test_x_should_retry_false_says_why():
    with pytest.raises(InvalidRequestError) as caught:
        run_classify(500, SERVER_ERROR, {"x-should-retry": "false"})
    assert "the server said not to retry" in caught.value.message


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "1500", "retry-after": "20"}, 1.5),
    ({"retry-after": "20"}, 20.0),
    ({"retry-after": "2.5"}, 2.5),
    ({"retry-after-ms": "bogus", "retry-after": "3"}, 3.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: no wait
    ({}, None),
])
def test_retry_after_ms_wins_over_retry_after(headers, expected):
    with pytest.raises(TransientError) as caught:
        run_classify(429, RATE_LIMIT_5, headers)
    assert caught.value.retry_after == expected


@pytest.mark.parametrize(("body", "says", "billed"), [
    (success_body(b"not an image at all"), "not an image", True),
    ({"created": 1, "data": [{"b64_json": "!!!not base64!!!"}]}, "not valid base64", True),
    ({"created": 1, "data": []}, "no image in the response (no data)", False),
    ({"created": 1}, "no image in the response (no data)", False),
    ({"created": 1, "data": [{"revised_prompt": "x"}]}, "no b64_json or url", False),
    (b"<html><title>Welcome to the portal</title></html>", "HTML page", False),
    (b'{"created": 1, "data": [{"b64_json": "iVBOR', "truncated or invalid JSON", True),
    (b"", "empty body", False),
])
def test_successful_status_without_an_image_is_transient(body, says, billed):
    with pytest.raises(TransientError) as caught:
        run_classify(200, body if isinstance(body, bytes) else json.dumps(body).encode())
    assert says in caught.value.message
    assert caught.value.possibly_billed is billed and not caught.value.overload


@pytest.mark.parametrize(("status", "body"), [
    (401, {"error": {"message": f"Incorrect API key provided: {KEY}."}}),
    (400, {"error": {"message": f"bad {KEY}", "code": "invalid_value"}}),
    (500, f"proxy error for key {KEY}".encode()),
    (429, {"error": {"message": "key sk-abc***wxyz is over its limit",
                     "code": "rate_limit_exceeded"}}),
])
def test_key_never_appears_in_messages(status, body):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body if isinstance(body, bytes) else json.dumps(body).encode())
    assert KEY not in caught.value.message and "sk-abc" not in caught.value.message
    assert "sk-***" in caught.value.message or "***" in caught.value.message


def test_key_is_redacted_from_transport_errors():
    def fail(request):
        raise httpx.ConnectError(f"cannot reach {request.headers['authorization']}")

    error, _ = generate(fail)
    assert type(error) is TransientError and KEY not in error.message
    assert not error.possibly_billed


def test_retired_models_carry_their_date_and_replacements():
    for model in ("dall-e-2", "dall-e-3"):
        note = catalog.retirement_note(model)
        assert "2026-05-12" in note and "gpt-image-1" in note
    assert catalog.retirement_note("gpt-image-1") is None
    assert catalog.lookup("dall-e-3").shutdown.isoformat() == "2026-05-12"


def test_catalog_knows_the_openai_models():
    assert registry.default_model("openai") == "gpt-image-1"
    for model, price in [("gpt-image-1", 0.042), ("gpt-image-1-mini", 0.011),
                         ("gpt-image-1.5", 0.034), ("dall-e-3", 0.04)]:
        info = catalog.lookup(model)
        assert info.family == "openai" and catalog.price(model, aspect_ratio="1:1") == price
        assert {"1:1", "3:2", "2:3", "16:9", "9:16", "4:3", "3:4"} <= set(info.aspect_ratios)


# --- Transport -----------------------------------------------------------------------------


def test_total_timeout_on_an_edit_may_be_billed():
    async def slow(request):
        await request.aread()
        await asyncio.sleep(5)

    request = ImageRequest("p", MODEL, references=(ReferenceImage("image/png", PNG),))
    error, _ = generate(slow, request, timeout=0.1)
    assert type(error) is TransientError and error.message == "no complete response within 0.1 s"


def test_post_multipart_returns_any_status():
    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(
                lambda r: httpx.Response(418, content=r.headers["content-type"].encode()))) as c:
            return await post_multipart(
                c, "http://x.invalid/upload", data={"a": "1"},
                files=[("f", ("f.png", PNG, "image/png"))], headers={"X-Test": "1"},
                timeout=5, max_bytes=1000, provider="p", redact=str)

    raw = asyncio.run(main())
    assert raw.status == 418 and raw.body.startswith(b"multipart/form-data; boundary=")


def test_aclose_closes_the_client():
    provider = OpenAIProvider(ProviderConfig("openai"), KEY, transport=httpx.MockTransport(ok))
    asyncio.run(provider.aclose())
    assert provider._client.is_closed


def test_provider_name():
    config = ProviderConfig(name="openai")
    assert OpenAIProvider(config, KEY, transport=httpx.MockTransport(ok)).name == "openai"
    assert OpenAIProvider(config, KEY, transport=httpx.MockTransport(ok), name="b").name == "b"


# --- Property: any JSON, any status -> an image, a URL, or a ProviderError -----------------

SCHEMA_KEYS = ["error", "code", "message", "type", "param", "data", "b64_json", "url",
               "revised_prompt", "usage", "created"]
LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from([
        base64.b64encode(PNG).decode(), "insufficient_quota", "moderation_blocked",
        "rate_limit_exceeded", "model_not_found", "invalid_api_key", "requests", KEY, "",
    ])
)  # fmt: skip
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 599) | st.sampled_from([200, 400, 429, 503]), doc=JSON,
       should_retry=st.sampled_from([None, "true", "false"]))
def test_any_json_gives_an_image_a_url_or_a_provider_error(status, doc, should_retry):
    headers = {"x-should-retry": should_retry} if should_retry else {}
    try:
        result = run_classify(status, doc, headers)
    except ProviderError as error:
        assert isinstance(error.message, str) and KEY not in error.message
        assert error.provider == "openai" and error.status == status
    else:
        assert isinstance(result, GeneratedImage | ImageLink)
        assert not isinstance(result, GeneratedImage) or result.data == PNG


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=200))
def test_any_bytes_give_a_provider_error(status, body):
    with pytest.raises(ProviderError):
        run_classify(status, body)


def test_module_constants_are_consistent():
    assert set(openai_requests.OPTION_DEFAULTS) <= set(openai_requests.OPTION_CHOICES)
    assert openai_answers.QUOTA_CODES.isdisjoint(openai_answers.OVERLOAD_CODES
                                                 | openai_answers.BLOCKED_CODES)
