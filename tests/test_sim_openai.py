"""The simulator's OpenAI Images API over real sockets (127.0.0.1:0), and OpenAIProvider
talking to it end to end."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import ssl
import time

import httpx
import pytest
from PIL import Image

from nbbatch.errors import (
    BlockedError,
    FatalError,
    InvalidRequestError,
    ProviderError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import GeneratedImage, ImageRequest, ReferenceImage
from nbbatch.providers.openai import OpenAIProvider
from nbbatch.sim import SimulatorOptions, SimulatorServer, simulator_core
from nbbatch.sim.inprocess import simulator_transport

KEY = "sk-test-0123456789abcdefWXYZ"
TLS = ssl.create_default_context()  # plain http only; one context instead of one per client
GEMINI_BODY = {"contents": [{"parts": [{"text": "a red sneaker"}]}]}


def png(size=(8, 8), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, fmt)
    return buffer.getvalue()


class Sim:
    def __init__(self, clock=time.monotonic, **options):
        options.setdefault("serve_retired", True)  # these tests cover retired models too
        self.server = SimulatorServer(SimulatorOptions(**options), clock=clock).start()
        self.client = httpx.Client(base_url=self.server.url, verify=TLS,
                                   headers={"Authorization": f"Bearer {KEY}"})

    def generate(self, prompt="a red fox in snow", model="gpt-image-1", **fields):
        return self.client.post("/v1/images/generations",
                                json={"model": model, "prompt": prompt, **fields})

    def edit(self, images=None, prompt="put it on a street", model="gpt-image-1",
             headers=None, **fields):
        images = (png(),) if images is None else images
        files = [("image[]", (f"i{n}.png", data, "image/png")) for n, data in enumerate(images)]
        return self.client.post("/v1/images/edits", headers=headers,
                                data={"model": model, "prompt": prompt, **fields}, files=files)

    def gemini(self, model="gemini-3-pro-image"):
        return self.client.post(f"/v1beta/models/{model}:generateContent", json=GEMINI_BODY,
                                headers={"x-goog-api-key": KEY})

    def log(self):
        return self.client.get("/_sim/requests").json()

    def close(self):
        self.client.close()
        self.server.stop()


@pytest.fixture
def sim():
    made = []

    def make(**options) -> Sim:
        made.append(Sim(**options))
        return made[-1]

    yield make
    for s in made:
        s.close()


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


def image_of(response: httpx.Response) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
    image.load()
    return image


# --- success -------------------------------------------------------------------------


def test_generation_success_is_an_images_response(sim):
    response = sim().generate(size="1536x1024", quality="low")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers["openai-version"] == "2020-10-01"
    assert response.headers["x-ratelimit-limit-requests"].isdigit()
    assert re.fullmatch(r"\d+(ms|s|m|h)", response.headers["x-ratelimit-reset-requests"])
    doc = response.json()
    assert isinstance(doc["created"], int)
    assert (doc["background"], doc["output_format"], doc["quality"], doc["size"]) == (
        "opaque", "png", "low", "1536x1024")
    usage = doc["usage"]
    assert usage["output_tokens"] == usage["output_tokens_details"]["image_tokens"] == 400
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    image = image_of(response)
    assert image.format == "PNG" and image.width > image.height


@pytest.mark.parametrize(("fmt", "pillow"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_output_format_is_honoured(sim, fmt, pillow):
    response = sim().generate(output_format=fmt)
    assert response.json()["output_format"] == fmt and image_of(response).format == pillow


def test_auto_resolves_to_a_real_size_and_quality(sim):
    doc = sim().generate().json()
    assert (doc["size"], doc["quality"]) == ("1024x1024", "medium")
    assert doc["usage"]["output_tokens"] == 1056


def test_dall_e_3_answers_a_url_by_default_then_serves_it(sim):
    s = sim()
    response = s.generate(model="dall-e-3", size="1792x1024", quality="hd", style="natural")
    assert response.status_code == 200
    [item] = response.json()["data"]
    assert item["revised_prompt"] and "b64_json" not in item
    assert "usage" not in response.json()
    assert item["url"].startswith(s.server.url + "/_sim/files/")
    image = httpx.get(item["url"], verify=TLS)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).format == "PNG"
    assert s.client.get("/_sim/files/nope.png").status_code == 404

    response = s.generate(model="dall-e-3", response_format="b64_json")
    assert "b64_json" in response.json()["data"][0]


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "param", "code", "message"), [
    ({"size": "1254x836"}, "size", "invalid_value",
     "Invalid value: '1254x836'. Supported values are: '1024x1024', '1024x1536', '1536x1024', "
     "and 'auto'."),
    ({"quality": "hd"}, "quality", "invalid_value", None),
    ({"response_format": "b64_json"}, "response_format", "unknown_parameter",
     "Unknown parameter: 'response_format'."),
    ({"bogus": 1}, "bogus", "unknown_parameter", None),
    ({"n": 11}, "n", "integer_above_max_value", None),
    ({"background": "transparent", "output_format": "jpeg"}, "background", "invalid_value", None),
    ({"prompt": ""}, "prompt", "missing_required_parameter",
     "Missing required parameter: 'prompt'."),
    ({"prompt": "x" * 32001}, "prompt", "string_above_max_length", None),
    ({"prompt": "an [invalid] fox"}, "prompt", "invalid_value", None),
])  # fmt: skip
def test_bad_generation_requests_are_400(sim, fields, param, code, message):
    s = sim()
    response = s.generate(**fields)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert message is None or error["message"] == message
    assert s.log()[-1]["outcome"] == "invalid"


def test_dall_e_limits(sim):
    s = sim()
    assert error_of(s.generate(model="dall-e-3", n=2))["param"] == "n"
    assert error_of(s.generate(model="dall-e-3", prompt="x" * 4001))["code"] == (
        "string_above_max_length")
    assert error_of(s.generate(model="dall-e-2", output_format="png"))["code"] == (
        "unknown_parameter")


def test_unparsable_json_is_400(sim):
    s = sim()
    response = s.client.post("/v1/images/generations", content=b"{nope",
                             headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("We could not parse the JSON body")


def test_unknown_model_is_404_model_not_found(sim):
    s = sim()
    response = s.generate(model="gpt-image-9")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "The model `gpt-image-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}
    assert s.generate(model="gemini-3-pro-image").status_code == 404
    assert s.gemini(model="gpt-image-1").status_code == 404  # and the other way round
    assert [e["outcome"] for e in s.log()] == ["not_found"] * 3


def test_unknown_openai_route_is_invalid_url(sim):
    s = sim()
    response = s.client.get("/v1/images/generations")
    assert response.status_code == 404
    assert error_of(response)["message"] == "Invalid URL (GET /v1/images/generations)"
    assert s.client.post("/v1/images/variations").status_code == 404
    assert s.client.post("/v1/chat/completions").status_code == 404  # not ours: generic 404
    assert s.log() == []


# --- auth ----------------------------------------------------------------------------


def test_missing_key_is_401(sim):
    s = sim()
    response = httpx.post(f"{s.server.url}/v1/images/generations", verify=TLS,
                          json={"model": "gpt-image-1", "prompt": "x"})
    assert response.status_code == 401
    error = error_of(response)
    assert error["message"].startswith("You didn't provide an API key.")
    assert error["code"] is None and error["type"] == "invalid_request_error"
    assert "x-request-id" in response.headers
    assert s.log()[0]["outcome"] == "auth"


def test_wrong_key_is_401_invalid_api_key_with_a_masked_echo(sim):
    s = sim(api_key="sk-the-right-key-000000")
    response = s.generate()
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "invalid_api_key"
    assert error["message"] == (
        "Incorrect API key provided: sk-test-****************WXYZ. You can find your API key "
        "at https://platform.openai.com/account/api-keys.")
    assert KEY not in response.text


# --- faults --------------------------------------------------------------------------


def test_overloaded_is_503(sim):
    response = sim(overloaded=1.0).generate()
    assert response.status_code == 503
    assert error_of(response)["code"] == "server_is_overloaded"


def test_rate_limited_is_429_with_both_retry_headers(sim):
    response = sim(rate_limited=1.0, retry_delay=2.5).generate()
    assert response.status_code == 429
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("3", "2500")
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    error = error_of(response)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert error["message"].startswith("Rate limit exceeded for images per minute")


def test_internal_and_no_image_are_500_server_errors(sim):
    response = sim(internal=1.0).generate()
    error = error_of(response)
    assert response.status_code == 500 and error["type"] == "server_error"
    assert error["code"] is None and response.headers["x-request-id"] in error["message"]
    s = sim(no_image=1.0)
    response = s.generate()
    assert response.status_code == 500 and error_of(response)["code"] == "server_error"
    assert s.log()[0]["outcome"] == "no_image"


def test_blocked_fault_and_word_are_moderation_blocked(sim):
    s = sim(blocked=1.0)
    response = s.generate()
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"]) == ("image_generation_user_error", "moderation_blocked")
    assert error["moderation_details"]["moderation_stage"] == "output"
    assert error["message"].startswith("Your request was rejected by the safety system.")

    s = sim()
    error = error_of(s.generate(prompt="a [blocked] fox"))
    assert error["moderation_details"]["moderation_stage"] == "input"
    assert error_of(s.generate(model="dall-e-3", prompt="a [blocked] fox"))["code"] == (
        "content_policy_violation")
    assert [e["outcome"] for e in s.log()] == ["blocked", "blocked"]


def test_daily_quota_is_insufficient_quota(sim):
    s = sim(daily_quota=1)
    assert s.generate().status_code == 200
    response = s.generate()
    assert response.status_code == 429
    assert error_of(response)["code"] == "insufficient_quota"
    assert "retry-after" not in response.headers
    assert s.client.post("/_sim/reset-quota").status_code == 200
    assert s.generate().status_code == 200


def test_timeout_fault_hangs_then_sends_a_gateway_page(sim):
    s = sim(timeout=1.0, hang=0.2)
    start = time.monotonic()
    response = s.generate()
    assert time.monotonic() - start >= 0.2
    assert response.status_code == 504
    assert response.headers["content-type"] == "text/html"
    assert b"504 Gateway Time-out" in response.content


# --- edits ---------------------------------------------------------------------------


def test_edit_with_two_images_succeeds_and_is_logged(sim):
    s = sim()
    response = s.edit(images=(png(), png(fmt="JPEG")), size="1024x1536", input_fidelity="high")
    assert response.status_code == 200
    assert image_of(response).height > image_of(response).width
    assert response.json()["usage"]["input_tokens_details"]["image_tokens"] > 0
    [entry] = s.log()
    assert (entry["provider"], entry["model"], entry["references"], entry["outcome"]) == (
        "openai", "gpt-image-1", 2, "success")
    assert entry["prompt"] == "put it on a street"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"images": (b"not an image",)}, "image"),
    ({"images": ()}, "image"),
    ({"images": (png(),) * 17}, "image"),
    ({"model": "dall-e-3"}, "model"),
    ({"model": "dall-e-2", "images": (png((8, 4)),)}, "image"),  # not square
    ({"model": "gpt-image-1-mini", "input_fidelity": "high"}, "input_fidelity"),
    ({"moderation": "low"}, "moderation"),  # generations only
])
def test_bad_edits_are_400(sim, kwargs, param):
    s = sim()
    if kwargs.get("images") == ():
        response = s.client.post("/v1/images/edits", files={"prompt": (None, "p")})
    else:
        response = s.edit(**kwargs)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param


def test_edit_needs_multipart(sim):
    response = sim().client.post("/v1/images/edits", json={"prompt": "p"})
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("Invalid Content-Type header")


# --- targeting faults at one API -----------------------------------------------------


def test_outage_can_hit_one_api(sim):
    s = sim(outage=(0, 1e9), outage_target="gemini")
    assert (s.gemini().status_code, s.generate().status_code) == (503, 200)
    s.client.post("/_sim/configure", json={"outage_target": "openai"})
    assert (s.gemini().status_code, s.generate().status_code) == (200, 503)
    s.client.post("/_sim/configure", json={"outage_target": "all"})
    assert (s.gemini().status_code, s.generate().status_code) == (503, 503)
    assert [(e["provider"], e["outcome"]) for e in s.log()] == [
        ("gemini", "overloaded"), ("openai", "success"), ("gemini", "success"),
        ("openai", "overloaded"), ("gemini", "overloaded"), ("openai", "overloaded")]


def test_faults_can_hit_one_api(sim):
    s = sim(overloaded=1.0, fault_target="openai")
    assert (s.gemini().status_code, s.generate().status_code) == (200, 503)
    s.client.post("/_sim/configure", json={"fault_target": "gemini"})
    assert (s.gemini().status_code, s.generate().status_code) == (503, 200)


def test_quota_can_limit_one_api_and_is_counted_per_api(sim):
    s = sim(daily_quota=1, quota_target="gemini")
    assert [s.gemini().status_code for _ in range(2)] == [200, 429]
    assert [s.generate().status_code for _ in range(2)] == [200, 200]
    stats = s.client.get("/_sim/stats").json()
    assert stats["quota_used_by_provider"] == {"gemini": 1, "openai": 2}
    assert stats["quota_used"] == 3
    assert stats["requests_by_provider"] == {"gemini": 2, "openai": 2}
    s.client.post("/_sim/configure", json={"quota_target": "all"})
    assert s.generate().status_code == 429


@pytest.mark.parametrize("body", [{"outage_target": "vertex"}, {"fault_target": ""},
                                  {"quota_target": None}])
def test_configure_rejects_bad_targets(sim, body):
    s = sim()
    assert s.client.post("/_sim/configure", json=body).status_code == 400
    assert s.server.core.options == SimulatorOptions(serve_retired=True)


def test_seeded_draws_repeat_across_apis():
    def statuses(seed):
        core = simulator_core(SimulatorOptions(overloaded=0.5, seed=seed))
        auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        body = b'{"model": "gpt-image-1", "prompt": "p"}'
        return [core.handle("POST", "/v1/images/generations", auth, body).status
                for _ in range(12)]

    assert statuses(3) == statuses(3) and set(statuses(3)) == {200, 503}


# --- OpenAIProvider against the simulator, end to end --------------------------------


def provider_run(url, request=None, key=KEY, timeout=5.0, options=None):
    async def main():
        provider = OpenAIProvider(ProviderConfig("openai", base_url=f"{url}/v1", timeout=timeout,
                                                 options=options or {}), key)
        try:
            return await provider.generate(request or ImageRequest("a red fox", "gpt-image-1"))
        except ProviderError as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize(("options", "request_", "cls", "attrs"), [
    ({"overloaded": 1.0}, None, TransientError, {"overload": True, "status": 503}),
    ({"rate_limited": 1.0, "retry_delay": 2.5}, None, TransientError,
     {"overload": True, "retry_after": 2.5, "status": 429}),
    ({"internal": 1.0}, None, TransientError, {"overload": False, "status": 500}),
    ({"no_image": 1.0}, None, TransientError, {"overload": False, "status": 500}),
    ({"blocked": 1.0}, None, BlockedError, {"status": 400}),
    ({}, ImageRequest("a [blocked] fox", "gpt-image-1"), BlockedError, {}),
    ({}, ImageRequest("a [blocked] fox", "dall-e-3"), BlockedError, {}),
    ({"daily_quota": 0}, None, QuotaExhaustedError, {"status": 429}),
    ({"api_key": "sk-other-key-0000000000"}, None, FatalError, {"status": 401}),
    ({}, ImageRequest("a fox", "gpt-image-9"), UnknownModelError, {"status": 404}),
    ({}, ImageRequest("an [invalid] fox", "gpt-image-1"), InvalidRequestError, {"status": 400}),
    ({"timeout": 1.0, "hang": 0.3}, None, TransientError, {"status": 504}),
])  # fmt: skip
def test_provider_classifies_every_simulated_fault(sim, options, request_, cls, attrs):
    s = sim(**options)
    error = provider_run(s.server.url, request_)
    assert type(error) is cls, error
    assert error.provider == "openai" and KEY not in error.message
    assert "sk-test-" not in error.message
    for name, value in attrs.items():
        assert getattr(error, name) == value, name
    assert error.request_id and error.request_id.startswith("req_")


def test_provider_times_out_on_a_hang_and_counts_it_as_possibly_billed(sim):
    s = sim(timeout=1.0)  # hangs for 600 s; the provider gives up after 0.2 s
    error = provider_run(s.server.url, timeout=0.2)
    assert type(error) is TransientError and error.possibly_billed
    assert "within 0.2 s" in error.message


def test_provider_success_generation_and_edit(sim):
    s = sim()
    result = provider_run(s.server.url, ImageRequest("a fox", "gpt-image-1.5",
                                                     aspect_ratio="9:16"),
                          options={"output_format": "webp", "quality": "high"})
    assert isinstance(result, GeneratedImage) and result.mime_type == "image/webp"
    assert result.usage["output_tokens"] == 6240 and result.request_id.startswith("req_")
    assert result.model == "gpt-image-1.5"

    refs = (ReferenceImage("image/png", png()), ReferenceImage("image/jpeg", png(fmt="JPEG")))
    result = provider_run(s.server.url, ImageRequest("edit", "gpt-image-1", references=refs))
    assert isinstance(result, GeneratedImage) and result.mime_type == "image/png"
    assert s.log()[-1]["references"] == 2

    result = provider_run(s.server.url, ImageRequest("old", "dall-e-3", aspect_ratio="16:9"))
    assert isinstance(result, GeneratedImage) and result.text.startswith("A detailed")


def test_provider_through_the_in_process_transport():
    async def main():
        transport = simulator_transport(SimulatorOptions(outage=(0, 1e9),
                                                         outage_target="gemini"))
        provider = OpenAIProvider(ProviderConfig("openai", base_url="http://simulator.invalid/v1"),
                                  KEY, transport=transport)
        try:
            return await provider.generate(ImageRequest("a fox", "gpt-image-1-mini"))
        finally:
            await provider.aclose()

    result = asyncio.run(main())
    assert isinstance(result, GeneratedImage) and result.mime_type == "image/png"


def test_models_past_their_shutdown_are_gone_as_the_real_apis_say():
    from nbbatch.sim import SimulatorOptions, SimulatorServer

    with SimulatorServer(SimulatorOptions()) as server, httpx.Client(
            base_url=server.url, verify=TLS, headers={"Authorization": f"Bearer {KEY}"}) as c:
        gone = c.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "a fox"})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
        gemini = c.post("/v1beta/models/gemini-2.5-flash-image:generateContent",
                        json=GEMINI_BODY, headers={"x-goog-api-key": KEY})
        assert gemini.status_code == 404
        live = c.post("/v1/images/generations", json={"model": "gpt-image-1", "prompt": "a fox"})
        assert live.status_code == 200
