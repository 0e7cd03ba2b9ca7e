"""StabilityProvider and its classify against httpx.MockTransport (no network).

Error bodies are Stability's shapes, {"id", "name", "errors"} (v1: "message"), with the
texts Stability documents wherever it gives them.
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
from nbbatch.providers import create_provider, registry
from nbbatch.providers.base import (
    CheckUnavailable,
    GeneratedImage,
    ImageRequest,
    ReferenceImage,
)
from nbbatch.providers.stability import (
    ASPECT_RATIOS,
    StabilityProvider,
    check_options,
    classify,
    nearest_ratio,
    settle_options,
)
from nbbatch.providers.wire import redactor

KEY = "sk-STABILITYtestkey0123456789abcdefghijklmnop"
MODEL = "stable-image-core"


def image_bytes(fmt="PNG", color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, fmt)
    return buffer.getvalue()


PNG, JPEG = image_bytes(), image_bytes("JPEG", "blue")
RAW_OK = {"content-type": "image/png", "finish-reason": "SUCCESS", "seed": "343940597",
          "x-request-id": "a1b2c3"}


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers=RAW_OK)


def generate(handler, request=None, key=KEY, accept="image/*", **config):
    """Run one generate() through a MockTransport; returns (result or error, requests seen)."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request):
        request.read()
        seen.append(request)
        return handler(request)

    async def main():
        provider = StabilityProvider(ProviderConfig(name="stability", **config), key,
                                     transport=httpx.MockTransport(record), accept=accept)
        try:
            return await provider.generate(request or ImageRequest("a red fox in snow", MODEL))
        except ProviderError as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main()), seen


def check(handler, model=MODEL, **config):
    seen: list[httpx.Request] = []

    def record(request):
        seen.append(request)
        return handler(request)

    async def main():
        provider = StabilityProvider(ProviderConfig(name="stability", **config), KEY,
                                     transport=httpx.MockTransport(record))
        try:
            return await provider.check(model)
        except (ProviderError, CheckUnavailable) as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main()), seen


def form(request: httpx.Request) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name, content type, bytes) of each multipart part, in order."""
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()]  # fmt: skip


def fields(request: httpx.Request) -> dict[str, str]:
    return {name: data.decode() for name, filename, _, data in form(request) if filename is None}


def run_classify(status, body, headers=None, model=MODEL):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return classify(status, headers or {}, body, provider="stability", redact=redactor(KEY),
                    model=model, key_env="STABILITY_API_KEY")


# --- The request ---------------------------------------------------------------------------


def test_core_request_is_multipart_with_no_file_and_asks_for_raw_bytes():
    result, seen = generate(ok, ImageRequest("a red fox in snow", MODEL, aspect_ratio="16:9"))
    assert isinstance(result, GeneratedImage)
    [sent] = seen
    assert (sent.method, str(sent.url)) == (
        "POST", "https://api.stability.ai/v2beta/stable-image/generate/core")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["accept"] == "image/*"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert all(filename is None for _, filename, _, _ in form(sent))  # text parts only
    assert fields(sent) == {"prompt": "a red fox in snow", "output_format": "png",
                            "aspect_ratio": "16:9"}


@pytest.mark.parametrize(("model", "path", "model_field"), [
    ("stable-image-core", "core", None), ("stable-image-ultra", "ultra", None),
    ("sd3.5-large", "sd3", "sd3.5-large"), ("sd3.5-large-turbo", "sd3", "sd3.5-large-turbo"),
    ("sd3.5-medium", "sd3", "sd3.5-medium"),
])  # fmt: skip
def test_each_model_goes_to_its_endpoint(model, path, model_field):
    _, [sent] = generate(ok, ImageRequest("p", model), base_url="http://127.0.0.1:9/")
    assert str(sent.url) == f"http://127.0.0.1:9/v2beta/stable-image/generate/{path}"
    assert fields(sent).get("model") == model_field
    assert "aspect_ratio" not in fields(sent)  # none asked: Stability's default 1:1


def test_options_are_sent_as_fields():
    options = {"negative_prompt": "blurry", "style_preset": "cinematic", "seed": 42,
               "output_format": "jpeg", "quality": "high"}  # quality is OpenAI's: ignored
    _, [sent] = generate(ok, ImageRequest("p", "sd3.5-large", aspect_ratio="9:21"),
                         options=options)
    assert fields(sent) == {"prompt": "p", "output_format": "jpeg", "aspect_ratio": "9:21",
                            "model": "sd3.5-large", "negative_prompt": "blurry",
                            "style_preset": "cinematic", "seed": "42"}


def test_a_ratio_stability_lacks_is_mapped_and_recorded_in_usage():
    result, [sent] = generate(ok, ImageRequest("p", MODEL, aspect_ratio="4:3"))
    assert fields(sent)["aspect_ratio"] == "5:4"
    assert result.usage == {"aspect_ratio": "5:4", "aspect_ratio_asked": "4:3",
                            "finish_reason": "SUCCESS", "seed": 343940597}


@pytest.mark.parametrize(("asked", "sent"), [
    ("1:1", "1:1"), ("16:9", "16:9"), ("9:21", "9:21"), ("4:3", "5:4"), ("3:4", "4:5"),
    ("4:1", "21:9"), ("1:8", "9:21"), ("10:11", "1:1"), ("7:4", "16:9"), ("2:1", "16:9"),
    ("1.5:1", "3:2"), (" 3 : 2 ", "3:2"),
])  # fmt: skip
def test_nearest_ratio(asked, sent):
    assert nearest_ratio(asked) == sent


def test_every_catalog_ratio_maps_to_itself_and_the_catalog_agrees():
    for info in catalog.MODELS.values():
        if info.family == "stability":
            assert info.aspect_ratios == ASPECT_RATIOS
    assert all(nearest_ratio(r) == r for r in ASPECT_RATIOS)
    with pytest.raises(InvalidRequestError):
        nearest_ratio("wide")


def test_sd3_takes_one_reference_image_as_image_to_image():
    request = ImageRequest("make it night", "sd3.5-large", aspect_ratio="16:9",
                           references=(ReferenceImage("image/jpeg", JPEG),))
    result, [sent] = generate(ok, request, options={"strength": 0.7})
    assert isinstance(result, GeneratedImage)
    parts = form(sent)
    assert ("image", "reference.jpg", "image/jpeg", JPEG) in parts
    assert fields(sent) == {"prompt": "make it night", "output_format": "png",
                            "mode": "image-to-image", "strength": "0.7", "model": "sd3.5-large"}
    assert "aspect_ratio" not in result.usage  # the output keeps the reference's shape


@pytest.mark.parametrize(("request_", "says"), [
    (ImageRequest("p", "stable-image-core", references=(ReferenceImage("image/png", PNG),)),
     "takes no reference images"),
    (ImageRequest("p", "stable-image-ultra", references=(ReferenceImage("image/png", PNG),)),
     "takes no reference images"),
    (ImageRequest("p", "sd3.5-medium", references=(ReferenceImage("image/png", PNG),) * 2),
     "takes one reference image"),
    (ImageRequest("x" * 10_001, MODEL), "at most 10000"),
    (ImageRequest("p", MODEL, aspect_ratio="wide"), "must look like 16:9"),
])  # fmt: skip
def test_requests_stability_would_refuse_fail_before_sending(request_, says):
    error, seen = generate(ok, request_)
    assert type(error) is InvalidRequestError and says in error.message
    assert error.provider == "stability" and seen == []


def test_sd3_cannot_write_webp_and_an_unknown_model_is_refused_locally():
    error, seen = generate(ok, ImageRequest("p", "sd3.5-large"), options={"output_format": "webp"})
    assert type(error) is InvalidRequestError and "cannot write webp" in error.message
    error, seen2 = generate(ok, ImageRequest("p", "stable-image-mega"))
    assert type(error) is UnknownModelError and error.exit_code == ExitCode.USAGE
    assert "stable-image-core" in error.message and seen == seen2 == []


@pytest.mark.parametrize(("options", "says"), [
    ({"style_preset": "watercolour"}, "providers.stability.style_preset"),
    ({"output_format": "gif"}, "providers.stability.output_format"),
    ({"seed": -1}, "providers.stability.seed"),
    ({"seed": 4_294_967_295}, "providers.stability.seed"),
    ({"seed": True}, "providers.stability.seed"),
    ({"negative_prompt": 5}, "providers.stability.negative_prompt"),
    ({"strength": 1.5}, "providers.stability.strength"),
])
def test_bad_options_are_usage_errors(options, says):
    with pytest.raises(UsageError, match=says):
        StabilityProvider(ProviderConfig("stability", options=options), KEY,
                          transport=httpx.MockTransport(ok))


def test_settled_options_fill_defaults_and_the_manifest_keeps_them_as_given():
    given = {"latency": 3, "negative_prompt": "  "}
    assert settle_options(given) == {"output_format": "png"}
    assert check_options(given) == given


def test_json_accept_is_sent_and_read():
    body = {"image": base64.b64encode(PNG).decode(), "finish_reason": "SUCCESS", "seed": 7}
    result, [sent] = generate(
        lambda r: httpx.Response(200, json=body,
                                 headers={"content-type": "application/json; type=image/png"}),
        accept="application/json")
    assert sent.headers["accept"] == "application/json"
    assert (result.data, result.usage) == (PNG, {"finish_reason": "SUCCESS", "seed": 7})


def test_registry_builds_it_from_stability_api_key():
    with pytest.raises(UsageError, match="STABILITY_API_KEY"):
        create_provider(ProviderConfig("stability"), {})
    provider = create_provider(ProviderConfig("stability"), {"STABILITY_API_KEY": KEY},
                               transport=httpx.MockTransport(ok))
    assert isinstance(provider, StabilityProvider)
    assert registry.default_model("stability") == "stable-image-core"


# --- Success -------------------------------------------------------------------------------


def test_raw_success_reads_bytes_seed_finish_and_request_id():
    result = run_classify(200, PNG, RAW_OK)
    assert result == GeneratedImage(data=PNG, mime_type="image/png", model=MODEL,
                                    usage={"finish_reason": "SUCCESS", "seed": 343940597},
                                    request_id="a1b2c3")


def test_mime_type_follows_the_bytes_not_the_header():
    result = run_classify(200, JPEG, {**RAW_OK, "content-type": "image/png"})
    assert result.mime_type == "image/jpeg"


# --- Every answer of the reference -----------------------------------------------------------


def err(name, *errors):
    return {"id": "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4", "name": name, "errors": list(errors)}


MODERATION = err("content_moderation", "Your request was flagged by our content moderation "
                 "system, as a result your request was denied and you were not charged.")
RATE = err("rate_limit_exceeded", "You have made more than 150 requests in 10 seconds.")
V1_AUTH = {"id": "296a972f-666a-44a1-a3df-c9c28a1f56c0", "name": "unauthorized",
           "message": "unauthorized: API key missing or invalid"}
V1_BAD = {"id": "296a972f-666a-44a1-a3df-c9c28a1f56c0", "name": "bad_request",
          "message": "Header parameter Authorization is required, but not found"}
JSON_OK = {"image": base64.b64encode(PNG).decode(), "finish_reason": "SUCCESS", "seed": 1}
HTML = b"<html><head><title>502 Bad Gateway</title></head></html>"
CASES = [
    # status, body, headers, error class, attributes
    (200, PNG, {**RAW_OK, "finish-reason": "CONTENT_FILTERED"}, BlockedError, {}),
    (200, {**JSON_OK, "finish_reason": "CONTENT_FILTERED"}, {}, BlockedError, {}),
    (200, PNG, {**RAW_OK, "finish-reason": "ERROR"}, TransientError, {}),  # v1 finishReason
    (200, MODERATION, {}, BlockedError, {}),  # an error document inside a 200
    (400, err("bad_request", "some-field: is required"), {}, InvalidRequestError, {}),
    (400, V1_BAD, {}, InvalidRequestError, {}),
    (413, err("payload_too_large", "body: is larger than 10MiB"), {}, InvalidRequestError, {}),
    (413, b"<html><title>413 Request Entity Too Large</title></html>", {}, InvalidRequestError,
     {}),
    (422, err("invalid_language", "English is the only supported language"), {},
     InvalidRequestError, {}),
    (403, MODERATION, {}, BlockedError, {}),
    (403, err("forbidden", "ApiKey Forbidden"), {}, FatalError, {}),
    (401, V1_AUTH, {}, FatalError, {}),
    (401, b"", {}, FatalError, {}),
    (402, err("payment_required", "You lack sufficient credits to make this request."), {},
     QuotaExhaustedError, {}),
    (400, err("insufficient_balance", "Your balance is insufficient"), {}, QuotaExhaustedError,
     {}),
    (429, RATE, {}, TransientError, {"overload": True, "retry_after": 60.0}),
    (429, RATE, {"retry-after": "12"}, TransientError, {"overload": True, "retry_after": 12.0}),
    (500, err("internal_error", "An unexpected server error has occurred, please try again "
              "later."), {}, TransientError, {"overload": False}),
    (502, HTML, {}, TransientError, {"overload": True}),
    (503, b"", {"retry-after": "5"}, TransientError, {"overload": True, "retry_after": 5.0}),
    (504, b"<html><title>504 Gateway Time-out</title></html>", {}, TransientError,
     {"overload": False}),
    (408, b"", {}, TransientError, {}),
    (404, err("not_found", "not found"), {}, UnknownModelError, {}),
    (302, b"", {"location": "https://elsewhere.invalid/"}, FatalError, {}),
]


@pytest.mark.parametrize(("status", "body", "headers", "cls", "attrs"), CASES)
def test_error_outcomes(status, body, headers, cls, attrs):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body, {**headers, "x-request-id": "req_7"})
    error = caught.value
    assert type(error) is cls
    assert (error.provider, error.status, error.request_id) == ("stability", status, "req_7")
    for name, value in attrs.items():
        assert getattr(error, name) == value, name
    assert KEY not in error.message


def test_a_blurred_image_is_blocked_and_keeps_its_seed():
    with pytest.raises(BlockedError) as caught:
        run_classify(200, PNG, {**RAW_OK, "finish-reason": "CONTENT_FILTERED"})
    assert "blurred" in caught.value.message and "not saved" in caught.value.message
    assert caught.value.usage == {"finish_reason": "CONTENT_FILTERED", "seed": 343940597}


def test_messages_say_what_happened_and_what_to_check():
    with pytest.raises(FatalError) as auth:
        run_classify(401, V1_AUTH)
    assert auth.value.message == ("API key rejected (HTTP 401): unauthorized: unauthorized: API "
                                  "key missing or invalid Check STABILITY_API_KEY.")
    assert auth.value.exit_code == ExitCode.AUTH
    with pytest.raises(QuotaExhaustedError) as quota:
        run_classify(402, err("payment_required", "You lack sufficient credits."))
    assert quota.value.message.startswith("out of credits: payment_required")
    assert quota.value.exit_code == ExitCode.TEMPFAIL
    with pytest.raises(TransientError) as rate:
        run_classify(429, RATE)
    assert "150 requests in 10 seconds" in rate.value.message


@pytest.mark.parametrize(("body", "headers", "says", "billed"), [
    (b"not an image at all", RAW_OK, "not an image", True),
    ({"image": "!!!not base64!!!", "finish_reason": "SUCCESS"}, {}, "not valid base64", True),
    ({"finish_reason": "SUCCESS", "seed": 1}, {}, 'no "image" field', False),
    (b'{"image": "iVBOR', {}, "truncated or invalid JSON", True),
    (b"<html><title>Welcome to the portal</title></html>", {"content-type": "text/html"},
     "HTML page", False),
    (b"", {}, "empty body", False),
])  # fmt: skip
def test_successful_status_without_an_image_is_transient(body, headers, says, billed):
    with pytest.raises(TransientError) as caught:
        run_classify(200, body, headers)
    assert says in caught.value.message
    assert caught.value.possibly_billed is billed and not caught.value.overload


@pytest.mark.parametrize(("status", "body"), [
    (401, err("unauthorized", f"key {KEY} is not valid")),
    (400, {"id": "x", "name": "bad_request", "message": f"bad {KEY}"}),
    (500, f"proxy error for key {KEY}".encode()),
    (403, err("forbidden", "key sk-abc***wxyz is disabled")),
])
def test_key_never_appears_in_messages(status, body):
    with pytest.raises(ProviderError) as caught:
        run_classify(status, body)
    assert KEY not in caught.value.message and "sk-abc" not in caught.value.message


@pytest.mark.parametrize("secret", [KEY, "Zq9" * 15])  # with and without the sk- prefix
def test_a_long_message_is_redacted_before_it_is_shortened(secret):
    # The key straddles the 500-character cut: shortening first would leave half of it.
    body = json.dumps(err("bad_request", "x" * 480 + secret + " tail")).encode()
    with pytest.raises(InvalidRequestError) as caught:
        classify(400, {}, body, provider="stability", redact=redactor(secret), model=MODEL)
    assert secret[:4] not in caught.value.message and len(caught.value.message) <= 500


# --- Pre-flight ----------------------------------------------------------------------------


def test_check_reads_the_balance_route_with_the_key():
    result, [sent] = check(lambda r: httpx.Response(200, json={"credits": 12.5}))
    assert result is None
    assert (sent.method, str(sent.url)) == ("GET", "https://api.stability.ai/v1/user/balance")
    assert sent.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(("handler", "model", "cls", "says"), [
    (lambda r: httpx.Response(200, json={"credits": 2.5}), "stable-image-core",
     QuotaExhaustedError, "2.5 credits; one stable-image-core image costs 3"),
    (lambda r: httpx.Response(200, json={"credits": 7}), "stable-image-ultra",
     QuotaExhaustedError, "costs 8"),
    (lambda r: httpx.Response(401, json=V1_AUTH), MODEL, FatalError, "STABILITY_API_KEY"),
    (lambda r: httpx.Response(401), MODEL, FatalError, "API key rejected (HTTP 401)"),
    # No answer about the key or the balance: the run sends one request alone instead.
    (lambda r: httpx.Response(500, json=err("internal_error", "oops")), MODEL,
     CheckUnavailable, "oops"),
    (lambda r: httpx.Response(400, json=V1_BAD), MODEL, CheckUnavailable, "bad_request"),
    (lambda r: httpx.Response(404, text="<html>no</html>"), MODEL, CheckUnavailable,
     "no balance route"),
    (lambda r: httpx.Response(405, json={"detail": "Method Not Allowed"}), MODEL,
     CheckUnavailable, "HTTP 405"),
    (lambda r: httpx.Response(200, text="<html>portal</html>"), MODEL, CheckUnavailable, ""),
    (lambda r: httpx.Response(200, json={"balance": 3}), MODEL, CheckUnavailable,
     "no credits"),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), MODEL,
     CheckUnavailable, "could not connect"),
])  # fmt: skip
def test_check_outcomes(handler, model, cls, says):
    error, _ = check(handler, model)
    assert type(error) is cls and says in str(error)


def test_check_knows_an_unknown_model_without_asking():
    error, seen = check(lambda r: httpx.Response(200, json={"credits": 100}), "sd4-huge")
    assert type(error) is UnknownModelError and seen == []


def test_catalog_prices_are_credits_at_one_cent():
    prices = {"stable-image-core": 0.03, "stable-image-ultra": 0.08, "sd3.5-large": 0.065,
              "sd3.5-large-turbo": 0.04, "sd3.5-medium": 0.035}
    for model, price in prices.items():
        info = catalog.lookup(model)
        assert info.family == "stability" and info.image_sizes == ("1K",)
        assert catalog.price(model, image_size="4K") == price  # one size: any asked size
        assert catalog.image_cost(model, {"seed": 5}, catalog.price(model)) == price


# --- Property: any JSON, any status -> an image or a ProviderError -----------------------------

LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from([base64.b64encode(PNG).decode(), "content_moderation", "CONTENT_FILTERED",
                       "SUCCESS", "payment_required", KEY, ""])
)  # fmt: skip
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "name", "errors", "message", "image", "finish_reason", "seed"])
        | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 599) | st.sampled_from([200, 400, 403, 429]), doc=JSON,
       finish=st.sampled_from([None, "SUCCESS", "CONTENT_FILTERED", "ERROR", "x"]))
def test_any_json_gives_an_image_or_a_provider_error(status, doc, finish):
    headers = {"finish-reason": finish} if finish else {}
    try:
        result = run_classify(status, doc, headers)
    except ProviderError as error:
        assert isinstance(error.message, str) and KEY not in error.message
        assert error.provider == "stability" and error.status == status
    else:
        assert isinstance(result, GeneratedImage) and result.data == PNG


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=200))
def test_any_bytes_give_a_provider_error(status, body):
    with pytest.raises(ProviderError):
        run_classify(status, body)
