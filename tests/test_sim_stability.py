"""The simulator's Stability API over a real socket (SimulatorServer on 127.0.0.1:0), then
StabilityProvider against it for every simulated answer."""

import asyncio
import base64
import io
import ssl
import time

import httpx
import pytest
from PIL import Image, ImageStat

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
from nbbatch.providers.base import (
    CheckUnavailable,
    GeneratedImage,
    ImageRequest,
    ReferenceImage,
)
from nbbatch.providers.stability import StabilityProvider
from nbbatch.sim import SimulatorOptions, SimulatorServer

TLS = ssl.create_default_context()  # plain http only; one context instead of one per client

KEY = "sk-stability-sim-0123456789abcdef"
CORE = "/v2beta/stable-image/generate/core"
SD3 = "/v2beta/stable-image/generate/sd3"


def png(size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, "PNG")
    return buffer.getvalue()


class Sim:
    def __init__(self, **options):
        self.server = SimulatorServer(SimulatorOptions(**options)).start()
        self.client = httpx.Client(base_url=self.server.url, verify=TLS,
                                   headers={"Authorization": f"Bearer {KEY}"})

    def post(self, path=CORE, accept="image/*", files=None, headers=None, **fields):
        fields.setdefault("prompt", "a red fox in snow")
        parts = [(k, (None, str(v).encode())) for k, v in fields.items()] + (files or [])
        return self.client.post(path, files=parts,
                                headers={"Accept": accept, **(headers or {})})

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


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- success -------------------------------------------------------------------------


def test_raw_image_answer_with_finish_reason_and_seed(sim):
    s = sim()
    response = s.post(aspect_ratio="16:9")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["finish-reason"] == "SUCCESS"
    assert response.headers["seed"].isdigit() and response.headers["x-request-id"]
    image = opened(response.content)
    assert image.format == "PNG" and image.width > image.height
    assert s.log()[-1] | {"t": 0} == {"t": 0, "provider": "stability",
                                      "model": "stable-image-core", "prompt": "a red fox in snow",
                                      "references": 0, "status": 200, "outcome": "success"}


def test_json_answer_carries_image_finish_reason_and_seed(sim):
    response = sim().post(accept="application/json", seed=42, output_format="jpeg")
    assert response.headers["content-type"] == "application/json; type=image/jpeg"
    assert "finish-reason" not in response.headers
    doc = response.json()
    assert (doc["finish_reason"], doc["seed"]) == ("SUCCESS", 42)
    assert opened(base64.b64decode(doc["image"])).format == "JPEG"


@pytest.mark.parametrize(("path", "fields", "fmt"), [
    ("/v2beta/stable-image/generate/ultra", {"output_format": "webp"}, "WEBP"),
    (SD3, {"model": "sd3.5-large-turbo", "output_format": "jpeg"}, "JPEG"),
])
def test_other_endpoints_and_formats(sim, path, fields, fmt):
    s = sim()
    response = s.post(path, **fields)
    assert response.status_code == 200 and opened(response.content).format == fmt
    assert s.log()[-1]["model"] == fields.get("model", "stable-image-ultra")


def test_filtered_word_answers_a_blurred_content_filtered_image(sim):
    s = sim()
    plain = opened(s.post(prompt="a fox").content)
    response = s.post(prompt="a fox [filtered]")
    assert response.status_code == 200 and response.headers["finish-reason"] == "CONTENT_FILTERED"
    blurred = opened(response.content)
    # the prompt text is written on every image; blurred, its contrast is gone
    assert ImageStat.Stat(blurred.convert("L")).stddev[0] < ImageStat.Stat(
        plain.convert("L")).stddev[0]
    assert s.log()[-1]["outcome"] == "blocked"


def test_image_to_image_on_sd3(sim):
    s = sim()
    response = s.post(SD3, mode="image-to-image", strength=0.5,
                      files=[("image", ("r.png", png(), "image/png"))])
    assert response.status_code == 200 and s.log()[-1]["references"] == 1


# --- front door ----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "fields", "files", "says"), [
    (CORE, {"prompt": ""}, None, "prompt: is required"),
    (CORE, {"aspect_ratio": "4:3"}, None, "aspect_ratio: must be one of"),
    (CORE, {"output_format": "gif"}, None, "output_format"),
    (CORE, {"style_preset": "watercolour"}, None, "style_preset"),
    (CORE, {"seed": "-1"}, None, "seed"),
    (CORE, {"cfg_scale": "7"}, None, "cfg_scale: is not a parameter"),
    (CORE, {}, [("image", ("r.png", png(), "image/png"))], "image: is not a parameter"),
    (SD3, {"model": "sd4"}, None, "model: must be one of"),
    (SD3, {"output_format": "webp"}, None, "output_format"),
    (SD3, {"mode": "image-to-image", "strength": "0.5"}, None, "exactly one image"),
    (SD3, {"mode": "image-to-image"}, [("image", ("r.png", png(), "image/png"))], "strength"),
    (SD3, {"mode": "image-to-image", "strength": "0.5", "aspect_ratio": "1:1"},
     [("image", ("r.png", png(), "image/png"))], "aspect_ratio: not allowed"),
    (SD3, {"mode": "image-to-image", "strength": "0.5"},
     [("image", ("r.png", b"not an image", "image/png"))], "not a valid PNG"),
    (CORE, {"prompt": "an [invalid] fox"}, None, "prompt"),
    (CORE, {"prompt": "x" * 10_001}, None, "at most 10000"),
])  # fmt: skip
def test_bad_requests_are_400_bad_request(sim, path, fields, files, says):
    response = sim().post(path, files=files, **fields)
    assert response.status_code == 400
    doc = response.json()
    assert doc["name"] == "bad_request" and len(doc["id"]) == 32
    assert any(says in e for e in doc["errors"]), doc


def test_a_urlencoded_form_and_a_bad_accept_are_refused(sim):
    s = sim()
    response = s.client.post(CORE, data={"prompt": "a fox"})  # no file: httpx urlencodes
    assert response.status_code == 400 and "multipart/form-data" in response.json()["errors"][0]
    response = s.post(accept="text/html")
    assert response.status_code == 400 and "accept" in response.json()["errors"][0]


def test_keys_and_routes(sim):
    s = sim(api_key=KEY)
    response = s.client.post(CORE, headers={"Authorization": ""}, files=[("prompt", (None, b"x"))])
    assert response.status_code == 401 and response.json()["name"] == "unauthorized"
    response = s.client.post(CORE, headers={"Authorization": "Bearer sk-other"},
                             files=[("prompt", (None, b"x"))])
    assert response.status_code == 401
    assert s.client.post("/v2beta/stable-image/generate/mega").status_code == 404
    assert s.client.get(CORE).status_code == 404
    assert [r["outcome"] for r in s.log()] == ["auth", "auth"]


def test_balance_counts_down_with_the_daily_quota(sim):
    s = sim(daily_quota=2, quota_target="stability")
    assert s.client.get("/v1/user/balance").json() == {"credits": 6.0}
    s.post()
    assert s.client.get("/v1/user/balance").json() == {"credits": 3.0}
    assert sim().client.get("/v1/user/balance").json() == {"credits": 1000.0}
    assert s.client.get("/v1/user/balance", headers={"Authorization": ""}).status_code == 401


# --- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "status", "name"), [
    ({"overloaded": 1.0}, 503, "service_unavailable"),
    ({"rate_limited": 1.0}, 429, "rate_limit_exceeded"),
    ({"internal": 1.0}, 500, "internal_error"),
    ({"no_image": 1.0}, 500, "internal_error"),
    ({"blocked": 1.0}, 403, "content_moderation"),
    ({"daily_quota": 0}, 402, "payment_required"),
    ({"outage": (0, 1e9), "outage_target": "stability"}, 503, "service_unavailable"),
])  # fmt: skip
def test_faults_answer_in_stabilitys_shapes(sim, options, status, name):
    response = sim(**options).post()
    assert response.status_code == status and response.json()["name"] == name


def test_rate_limit_says_150_in_10_seconds_and_when_to_come_back(sim):
    response = sim(rate_limited=1.0, retry_delay=2.2).post()
    assert response.json()["errors"] == ["You have made more than 150 requests in 10 seconds."]
    assert response.headers["retry-after"] == "3"


def test_blocked_word_is_content_moderation(sim):
    response = sim().post(prompt="a [blocked] fox")
    assert response.status_code == 403 and response.json()["name"] == "content_moderation"


def test_timeout_hangs_then_sends_a_gateway_page(sim):
    start = time.monotonic()
    response = sim(timeout=1.0, hang=0.2).post()
    assert time.monotonic() - start >= 0.2 and response.status_code == 504


def test_targets_leave_other_apis_alone(sim):
    s = sim(outage=(0, 1e9), outage_target="openai", daily_quota=0, quota_target="gemini",
            overloaded=1.0, fault_target="openrouter")
    assert s.post().status_code == 200


# --- StabilityProvider against the simulator ------------------------------------------


def provider_run(url, request=None, timeout=5.0, accept="image/*", check=None, options=None):
    async def main():
        provider = StabilityProvider(ProviderConfig("stability", base_url=url, timeout=timeout,
                                                    options=options or {}), KEY, accept=accept,
                                     transport=httpx.AsyncHTTPTransport(verify=TLS))
        try:
            if check:
                return await provider.check(check)
            return await provider.generate(request or ImageRequest("a fox", "stable-image-core"))
        except (ProviderError, CheckUnavailable) as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize(("options", "request_", "cls", "attrs"), [
    ({"overloaded": 1.0}, None, TransientError, {"overload": True, "status": 503}),
    ({"rate_limited": 1.0, "retry_delay": 2}, None, TransientError,
     {"overload": True, "retry_after": 2.0, "status": 429}),
    ({"internal": 1.0}, None, TransientError, {"overload": False, "status": 500}),
    ({"no_image": 1.0}, None, TransientError, {"status": 500}),
    ({"blocked": 1.0}, None, BlockedError, {"status": 403}),
    ({}, ImageRequest("a [blocked] fox", "sd3.5-large"), BlockedError, {"status": 403}),
    ({}, ImageRequest("a [filtered] fox", "stable-image-ultra"), BlockedError, {"status": 200}),
    ({"daily_quota": 0}, None, QuotaExhaustedError, {"status": 402}),
    ({"api_key": "sk-other-key-0000000000"}, None, FatalError, {"status": 401}),
    ({}, ImageRequest("an [invalid] fox", "sd3.5-medium"), InvalidRequestError, {"status": 400}),
    ({"timeout": 1.0, "hang": 0.3}, None, TransientError, {"status": 504}),
])  # fmt: skip
def test_provider_classifies_every_simulated_answer(sim, options, request_, cls, attrs):
    s = sim(**options)
    error = provider_run(s.server.url, request_)
    assert type(error) is cls, error
    assert error.provider == "stability" and KEY not in error.message
    for name, value in attrs.items():
        assert getattr(error, name) == value, name
    assert error.request_id


@pytest.mark.parametrize("accept", ["image/*", "application/json"])
def test_provider_success_both_ways_with_a_mapped_ratio(sim, accept):
    result = provider_run(sim().server.url, ImageRequest("a fox", "sd3.5-large",
                                                         aspect_ratio="3:4"),
                          accept=accept, options={"output_format": "jpeg", "seed": 9})
    assert isinstance(result, GeneratedImage) and result.mime_type == "image/jpeg"
    assert result.usage == {"aspect_ratio": "4:5", "aspect_ratio_asked": "3:4",
                            "finish_reason": "SUCCESS", "seed": 9}


def test_provider_image_to_image(sim):
    s = sim()
    request = ImageRequest("night", "sd3.5-medium", references=(ReferenceImage("image/png",
                                                                               png()),))
    assert isinstance(provider_run(s.server.url, request), GeneratedImage)
    assert s.log()[-1]["references"] == 1


def test_provider_check_against_the_balance_route(sim):
    assert provider_run(sim().server.url, check="stable-image-core") is None
    error = provider_run(sim(daily_quota=0).server.url, check="stable-image-core")
    assert type(error) is QuotaExhaustedError and "0 credits" in error.message
    error = provider_run(sim(api_key="other").server.url, check="stable-image-core")
    assert type(error) is FatalError
    error = provider_run(sim().server.url, check="stable-image-9")
    assert type(error) is UnknownModelError
