"""The simulator's OpenRouter API (under /api/v1) over a real socket, then
OpenRouterProvider against it for every simulated answer."""

import asyncio
import base64
import io
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
from nbbatch.providers.base import (
    CheckUnavailable,
    GeneratedImage,
    ImageRequest,
    ReferenceImage,
)
from nbbatch.providers.openrouter import OpenRouterProvider
from nbbatch.sim import SimulatorOptions, SimulatorServer

TLS = ssl.create_default_context()  # plain http only; one context instead of one per client

KEY = "sk-or-v1-sim0123456789abcdef0123456789"
MODEL = "google/gemini-3-pro-image-preview"
CHAT = "/api/v1/chat/completions"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "PNG")
    return buffer.getvalue()


class Sim:
    def __init__(self, **options):
        self.server = SimulatorServer(SimulatorOptions(**options)).start()
        self.client = httpx.Client(base_url=self.server.url, verify=TLS,
                                   headers={"Authorization": f"Bearer {KEY}"})

    def chat(self, prompt="a red fox in snow", model=MODEL, **fields):
        body = {"model": model, "messages": [{"role": "user", "content": prompt}],
                "modalities": ["image", "text"], **fields}
        return self.client.post(CHAT, json=body)

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
    doc = response.json()["error"]
    assert set(doc) <= {"code", "message", "metadata"}
    return doc


# --- success -------------------------------------------------------------------------


def test_success_is_a_chat_completion_with_a_data_url_image(sim):
    s = sim()
    response = s.chat(image_config={"aspect_ratio": "16:9", "image_size": "2K"})
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"].startswith("gen-") and doc["object"] == "chat.completion"
    message = doc["choices"][0]["message"]
    url = message["images"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    assert image.format == "PNG" and image.width > image.height
    assert doc["usage"]["cost"] == 0.134
    assert doc["usage"]["total_tokens"] == (doc["usage"]["prompt_tokens"]
                                            + doc["usage"]["completion_tokens"])
    assert s.log()[-1]["provider"] == "openrouter" and s.log()[-1]["outcome"] == "success"


def test_text_modality_only_answers_text(sim):
    s = sim()
    doc = s.chat(modalities=["text"]).json()
    assert "images" not in doc["choices"][0]["message"]
    assert s.client.get("/_sim/stats").json()["quota_used"] == 0


def test_reference_images_are_counted(sim):
    s = sim()
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    content = [{"type": "text", "text": "put it on a street"},
               {"type": "image_url", "image_url": {"url": data_url}}]
    assert s.chat(prompt=content).status_code == 200
    assert s.log()[-1]["references"] == 1 and s.log()[-1]["prompt"] == "put it on a street"


# --- front door ----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "says"), [
    ({"model": "google/gemini-9-image"}, "google/gemini-9-image is not a valid model ID"),
    ({"image_config": {"aspect_ratio": "7:3"}}, "image_config.aspect_ratio"),
    ({"image_config": {"image_size": "4K"}, "model": "openai/gpt-image-1"},
     "image_config.image_size"),
    ({"image_config": {"quality": "hd"}}, "image_config"),
    ({"modalities": ["audio"]}, "modalities"),
    ({"messages": []}, "messages"),
    ({"stream": True}, "Streaming"),
    ({"frobnicate": 1}, "Unrecognized request field"),
    ({"prompt": "an [invalid] fox"}, "Invalid prompt"),
    ({"prompt": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}]},
     "image_url"),
])  # fmt: skip
def test_bad_requests_are_400(sim, fields, says):
    response = sim().chat(**fields)
    assert response.status_code == 400
    assert error_of(response)["code"] == 400 and says in error_of(response)["message"]


def test_keys_and_routes(sim):
    s = sim(api_key=KEY)
    response = s.client.post(CHAT, headers={"Authorization": ""}, json={})
    assert response.status_code == 401 and error_of(response)["message"] == \
        "No auth credentials found"
    response = s.client.post(CHAT, headers={"Authorization": "Bearer sk-or-v1-other"}, json={})
    assert error_of(response) == {"code": 401, "message": "User not found."}
    assert s.client.get(CHAT).status_code == 404
    assert s.client.get("/api/v1/nothing").status_code == 404
    assert s.client.post("/api/v1/chat/completions", content=b"{").status_code == 400


def test_metadata_routes(sim):
    s = sim(daily_quota=3, quota_target="openrouter")
    key = s.client.get("/api/v1/key").json()["data"]
    assert key["limit_remaining"] == 3.0 and key["is_free_tier"] is False
    s.chat()
    assert s.client.get("/api/v1/key").json()["data"]["limit_remaining"] == 2.0
    model = s.client.get(f"/api/v1/models/{MODEL}/endpoints").json()["data"]
    assert model["id"] == MODEL and "image" in model["architecture"]["output_modalities"]
    assert s.client.get("/api/v1/models/google/nope/endpoints").status_code == 404
    assert s.client.get("/api/v1/key", headers={"Authorization": ""}).status_code == 401
    assert sim().client.get("/api/v1/key").json()["data"]["limit_remaining"] is None


# --- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "status"), [
    ({"overloaded": 1.0}, 503), ({"rate_limited": 1.0}, 429), ({"daily_quota": 0}, 402),
    ({"blocked": 1.0}, 403), ({"outage": (0, 1e9), "outage_target": "openrouter"}, 503),
])
def test_faults_answer_in_openrouters_shapes(sim, options, status):
    response = sim(**options).chat()
    assert response.status_code == status and error_of(response)["code"] == status


def test_rate_limit_has_retry_after(sim):
    response = sim(rate_limited=1.0, retry_delay=1.5).chat()
    assert response.headers["retry-after"] == "2"


def test_moderation_carries_its_metadata(sim):
    doc = error_of(sim().chat(prompt="a [blocked] fox"))
    assert doc["metadata"]["reasons"] == ["violence"]
    assert doc["metadata"]["flagged_input"] == "a [blocked] fox"
    assert doc["metadata"]["model_slug"] == MODEL


def test_internal_is_an_error_inside_a_200(sim):
    response = sim(internal=1.0).chat()
    assert response.status_code == 200 and response.json()["error"]["code"] == 502


def test_no_image_is_a_200_with_text_only(sim):
    s = sim(no_image=1.0)
    doc = s.chat().json()
    assert doc["choices"][0]["message"]["content"] and "images" not in doc["choices"][0]["message"]
    assert s.log()[-1]["outcome"] == "no_image"


def test_timeout_hangs_then_answers_408(sim):
    start = time.monotonic()
    response = sim(timeout=1.0, hang=0.2).chat()
    assert time.monotonic() - start >= 0.2 and response.status_code == 408


# --- OpenRouterProvider against the simulator -----------------------------------------


def provider_run(url, request=None, timeout=5.0, check=None):
    async def main():
        provider = OpenRouterProvider(ProviderConfig("openrouter", base_url=f"{url}/api/v1",
                                                     timeout=timeout), KEY,
                                      transport=httpx.AsyncHTTPTransport(verify=TLS))
        try:
            if check:
                return await provider.check(check)
            return await provider.generate(request or ImageRequest("a fox", MODEL))
        except (ProviderError, CheckUnavailable) as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize(("options", "request_", "cls", "attrs"), [
    ({"overloaded": 1.0}, None, TransientError, {"overload": True, "status": 503}),
    ({"rate_limited": 1.0, "retry_delay": 2}, None, TransientError,
     {"overload": True, "retry_after": 2.0, "status": 429}),
    ({"internal": 1.0}, None, TransientError, {"status": 200, "possibly_billed": True}),
    ({"no_image": 1.0}, None, TransientError, {"status": 200, "overload": False}),
    ({"blocked": 1.0}, None, BlockedError, {"status": 403}),
    ({}, ImageRequest("a [blocked] fox", MODEL), BlockedError, {"status": 403}),
    ({"daily_quota": 0}, None, QuotaExhaustedError, {"status": 402}),
    ({"api_key": "sk-or-v1-other"}, None, FatalError, {"status": 401}),
    ({}, ImageRequest("a fox", "google/gemini-9-image"), UnknownModelError, {"status": 400}),
    ({}, ImageRequest("an [invalid] fox", MODEL), InvalidRequestError, {"status": 400}),
    ({"timeout": 1.0, "hang": 0.3}, None, TransientError, {"status": 408}),
])  # fmt: skip
def test_provider_classifies_every_simulated_answer(sim, options, request_, cls, attrs):
    error = provider_run(sim(**options).server.url, request_)
    assert type(error) is cls, error
    assert error.provider == "openrouter" and KEY not in error.message
    for name, value in attrs.items():
        assert getattr(error, name) == value, name


def test_provider_success_with_references_ratio_size_and_cost(sim):
    s = sim()
    request = ImageRequest("a fox", "google/gemini-3.1-flash-image-preview", aspect_ratio="1:4",
                           image_size="512", references=(ReferenceImage("image/png", png()),))
    result = provider_run(s.server.url, request)
    assert isinstance(result, GeneratedImage) and result.mime_type == "image/png"
    assert result.usage["cost"] == 0.045 and result.request_id.startswith("gen-")
    assert result.text == "Here is your image." and s.log()[-1]["references"] == 1


def test_provider_check_against_the_metadata_routes(sim):
    assert provider_run(sim().server.url, check=MODEL) is None
    error = provider_run(sim().server.url, check="google/gemini-9-image")
    assert type(error) is UnknownModelError
    error = provider_run(sim(api_key="other").server.url, check=MODEL)
    assert type(error) is FatalError
    error = provider_run(sim(daily_quota=0, quota_target="openrouter").server.url, check=MODEL)
    assert type(error) is QuotaExhaustedError
