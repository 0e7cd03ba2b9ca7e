"""The Gemini simulator: wire shapes over real sockets (127.0.0.1:0) and in process."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from nbbatch.errors import UsageError
from nbbatch.sim import SimulatorOptions, SimulatorServer, parse_faults, simulator_core
from nbbatch.sim.images import draw_image, pixel_size
from nbbatch.sim.inprocess import SimulatorTransport, simulator_options, simulator_transport

KEY = "test-key"
# Plain http only, but httpx builds a TLS context per client (~50 ms): build one, share it.
TLS = ssl.create_default_context()
PRO, FLASH, NANO = "gemini-3-pro-image", "gemini-3.1-flash-image", "gemini-2.5-flash-image"


def post(url: str, **kw) -> httpx.Response:
    return httpx.post(url, verify=TLS, **kw)


def request_body(prompt="a red sneaker", aspect_ratio=None, image_size=None, references=0):
    image_config = {}
    if aspect_ratio:
        image_config["aspectRatio"] = aspect_ratio
    if image_size:
        image_config["imageSize"] = image_size
    ref = {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(b"png").decode()}}
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}, *[ref] * references]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config},
    }


class Sim:
    """A started SimulatorServer and an httpx client with the key set."""

    def __init__(self, clock=time.monotonic, **options):
        options.setdefault("serve_retired", True)  # these tests cover retired models too
        self.server = SimulatorServer(SimulatorOptions(**options), clock=clock).start()
        self.client = httpx.Client(
            base_url=self.server.url, headers={"x-goog-api-key": KEY}, verify=TLS
        )

    def generate(self, model=PRO, body=None, **kw) -> httpx.Response:
        return self.client.post(
            f"/v1beta/models/{model}:generateContent", json=body or request_body(**kw)
        )

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


def decode(part) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
    image.load()
    return image


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


# --- success -------------------------------------------------------------------------


def test_gemini_3_success_has_thoughts_then_a_signed_jpeg(sim):
    response = sim().generate(PRO, aspect_ratio="16:9", image_size="2K")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    candidate = doc["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["role"] == "model"
    thought_text, thought_image, final = candidate["content"]["parts"]
    assert thought_text["thought"] is True and thought_text["text"]
    assert thought_image["thought"] is True and "thoughtSignature" not in thought_image
    assert "thought" not in final and base64.b64decode(final["thoughtSignature"])
    assert final["inlineData"]["mimeType"] == "image/jpeg"
    image = decode(final)
    assert (image.format, image.size) == ("JPEG", (1376 // 4, 768 // 4))
    assert decode(thought_image).tobytes() != image.tobytes()
    usage = doc["usageMetadata"]
    assert usage["candidatesTokensDetails"] == [{"modality": "IMAGE", "tokenCount": 1120}]
    assert usage["candidatesTokenCount"] == 1120
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    assert usage["serviceTier"] == "standard"
    assert doc["modelVersion"] == PRO
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", doc["responseId"])


def test_gemini_2_5_success_is_a_png_without_thoughts(sim):
    doc = sim().generate(NANO, aspect_ratio="1:1").json()
    parts = doc["candidates"][0]["content"]["parts"]
    assert not any(p.get("thought") for p in parts)
    images = [p for p in parts if "inlineData" in p]
    assert len(images) == 1 and images[0]["inlineData"]["mimeType"] == "image/png"
    assert "thoughtSignature" not in images[0]
    assert decode(images[0]).format == "PNG"
    assert doc["usageMetadata"]["candidatesTokensDetails"][0]["tokenCount"] == 1290
    assert "thoughtsTokenCount" not in doc["usageMetadata"]


@pytest.mark.parametrize(("model", "size", "tokens"), [(PRO, "4K", 2000), (PRO, "1K", 1120),
                                                       (FLASH, "1K", 1120)])
def test_image_tokens_follow_the_reference_table(sim, model, size, tokens):
    doc = sim().generate(model, image_size=size).json()
    assert doc["usageMetadata"]["candidatesTokenCount"] == tokens


def test_a_prompt_asked_again_draws_a_sibling_image_the_same_on_every_simulator(sim):
    def image(doc):
        return doc["candidates"][0]["content"]["parts"][-1]["inlineData"]["data"]

    one, other = sim(), sim()
    first, second = (image(one.generate(prompt="same").json()) for _ in range(2))
    assert first != second  # count: 2 gives two images that can be told apart
    assert [image(other.generate(prompt="same").json()) for _ in range(2)] == [first, second]


def test_reference_images_in_both_spellings_are_accepted_and_logged(sim):
    s = sim()
    body = request_body(references=2)
    body["contents"][0]["parts"].append({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})
    assert s.generate(body=body).status_code == 200
    assert s.client.get("/_sim/requests").json()[0]["references"] == 3
    body["contents"][0]["parts"].append({"inline_data": {"data": "not base64!"}})
    response = s.generate(body=body)
    assert response.status_code == 400 and "Base64" in error_of(response)["message"]


def test_snake_case_request_and_key_in_query_are_accepted(sim):
    s = sim(api_key=KEY)
    body = {"contents": [{"parts": [{"text": "x"}]}],
            "generation_config": {"response_modalities": ["Image"],
                                  "image_config": {"aspect_ratio": "3:2"}}}
    response = post(f"{s.server.url}/v1beta/models/{PRO}:generateContent?key={KEY}",
                          json=body)
    assert response.status_code == 200
    assert decode(response.json()["candidates"][0]["content"]["parts"][-1]).size == (316, 212)


def test_text_only_modalities_get_text_only(sim):
    s = sim()
    body = request_body()
    body["generationConfig"]["responseModalities"] = ["TEXT"]
    doc = s.generate(body=body).json()
    assert all("inlineData" not in p for p in doc["candidates"][0]["content"]["parts"])
    assert s.client.get("/_sim/requests").json()[-1]["outcome"] == "no_image"


# --- faults --------------------------------------------------------------------------


def test_overloaded(sim):
    response = sim(overloaded=1.0).generate()
    assert response.status_code == 503
    assert response.json() == {"error": {
        "code": 503, "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE"}}


def test_rate_limited_is_per_minute_with_retry_info_and_no_retry_after_header(sim):
    response = sim(rate_limited=1.0, retry_delay=2.5).generate()
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    error = error_of(response)
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
    help_, quota, retry = error["details"]
    assert help_["@type"] == "type.googleapis.com/google.rpc.Help"
    assert quota["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    assert quota["violations"][0]["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel"
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}


def test_internal(sim):
    response = sim(internal=1.0).generate()
    assert response.status_code == 500
    assert error_of(response)["status"] == "INTERNAL"
    assert error_of(response)["message"].startswith("An internal error has occurred.")


def test_blocked_fault_is_image_safety_with_a_message(sim):
    response = sim(blocked=1.0).generate()
    assert response.status_code == 200
    doc = response.json()
    candidate = doc["candidates"][0]
    assert candidate["finishReason"] == "IMAGE_SAFETY"
    assert "You will not be charged" in candidate["finishMessage"]
    assert doc["usageMetadata"]["candidatesTokenCount"] == 0


def test_no_image_fault_has_empty_content(sim):
    doc = sim(no_image=1.0).generate().json()
    assert doc["candidates"] == [{"content": {}, "finishReason": "NO_IMAGE", "index": 0}]


def test_timeout_fault_holds_then_answers_504(sim):
    s = sim(timeout=1.0, hang=0.2)
    start = time.monotonic()
    response = s.generate()
    assert time.monotonic() - start >= 0.2
    assert response.status_code == 504
    assert error_of(response)["status"] == "DEADLINE_EXCEEDED"
    with pytest.raises(httpx.ReadTimeout):
        s.client.post(f"/v1beta/models/{PRO}:generateContent", json=request_body(), timeout=0.05)


def test_faults_are_drawn_in_order_first_hit_wins(sim):
    response = sim(no_image=1.0, internal=1.0, rate_limited=1.0).generate()
    assert response.status_code == 429


def test_seeded_draws_repeat():
    def outcomes(seed):
        core = simulator_core(SimulatorOptions(overloaded=0.5, internal=0.3, seed=seed))
        body = json.dumps(request_body()).encode()
        path = f"/v1beta/models/{PRO}:generateContent"
        return [core.handle("POST", path, {"X-Goog-Api-Key": KEY}, body).status
                for _ in range(20)]

    assert outcomes(7) == outcomes(7)
    assert set(outcomes(7)) == {200, 503, 500}


def test_stopping_the_server_ends_a_hanging_request_promptly():
    server = SimulatorServer(SimulatorOptions(timeout=1.0)).start()  # hang defaults to 600 s
    errors = []

    def call():
        try:
            post(f"{server.url}/v1beta/models/{PRO}:generateContent",
                       headers={"x-goog-api-key": KEY}, json=request_body(), timeout=30)
        except httpx.HTTPError as e:
            errors.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 2
    while not server.core.requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    server.stop()
    worker.join(timeout=2)
    assert time.monotonic() - start < 1.0
    assert not worker.is_alive()
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)


# --- quota and outage ----------------------------------------------------------------


def test_daily_quota_then_reset(sim):
    s = sim(daily_quota=2)
    assert [s.generate().status_code for _ in range(2)] == [200, 200]
    response = s.generate()
    assert response.status_code == 429
    error = error_of(response)
    assert "generate_requests_per_model_per_day" in error["message"]
    assert "limit: 2" in error["message"]
    violations = next(d for d in error["details"] if d["@type"].endswith("QuotaFailure"))
    assert violations["violations"][0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel"
    assert s.generate().status_code == 429
    assert s.client.post("/_sim/reset-quota").status_code == 200
    assert s.generate().status_code == 200
    assert s.client.get("/_sim/stats").json()["quota_used"] == 1


def test_concurrent_clients_all_get_answers_and_the_quota_is_exact(sim):
    s = sim(daily_quota=5)

    async def burst():
        async with httpx.AsyncClient(base_url=s.server.url, verify=TLS,
                                     headers={"x-goog-api-key": KEY},
                                     limits=httpx.Limits(max_connections=30)) as client:
            return await asyncio.gather(*[
                client.post(f"/v1beta/models/{PRO}:generateContent",
                            json=request_body(prompt=f"p{i}")) for i in range(30)])

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses == [200] * 5 + [429] * 25


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_outage_window_answers_503_only_inside_it(sim):
    clock = FakeClock()
    s = sim(clock=clock, outage=(10, 20))
    statuses = []
    for t in (5, 10, 19.9, 20):
        clock.now = 1000.0 + t
        statuses.append(s.generate().status_code)
    assert statuses == [200, 503, 503, 200]
    log = s.client.get("/_sim/requests").json()
    assert [e["t"] for e in log] == [5, 10, 19.9, 20]
    assert [e["outcome"] for e in log] == ["success", "overloaded", "overloaded", "success"]


# --- auth, routing, validation --------------------------------------------------------


def test_wrong_key_is_400_api_key_invalid(sim):
    s = sim(api_key="the-right-key")
    response = s.generate()
    assert response.status_code == 400
    assert response.json() == {"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."}]}}


def test_missing_key_is_403(sim):
    s = sim()
    response = post(f"{s.server.url}/v1beta/models/{PRO}:generateContent",
                          json=request_body())
    assert response.status_code == 403
    error = error_of(response)
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("Method doesn't allow unregistered callers")
    assert s.client.get("/_sim/requests").json()[0]["outcome"] == "auth"


def test_unknown_model_is_404(sim):
    response = sim().generate("gemini-9-image")
    assert response.status_code == 404
    assert error_of(response) == {
        "code": 404, "status": "NOT_FOUND",
        "message": "models/gemini-9-image is not found for API version v1beta, or is not "
        "supported for generateContent. Call ListModels to see the list of available models "
        "and their supported methods."}


@pytest.mark.parametrize(("model", "ratio", "size"), [
    (PRO, None, "1k"), (PRO, "1:8", None), (PRO, "7:3", None), (NANO, None, "2K"),
])
def test_bad_image_config_is_400(sim, model, ratio, size):
    response = sim().generate(model, aspect_ratio=ratio, image_size=size)
    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"


def test_flash_31_accepts_its_extra_ratios_and_512(sim):
    response = sim().generate(FLASH, aspect_ratio="1:8", image_size="512")
    assert response.status_code == 200
    width, height = decode(response.json()["candidates"][0]["content"]["parts"][-1]).size
    assert 7 <= height / width <= 9


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"contents": []}',
                                  b'{"contents": [{"parts": []}]}'])
def test_malformed_bodies_are_400(sim, body):
    s = sim()
    response = s.client.post(f"/v1beta/models/{PRO}:generateContent", content=body)
    assert response.status_code == 400
    assert s.client.get("/_sim/requests").json()[0]["outcome"] == "invalid"


def test_unknown_request_fields_are_400_like_the_real_api(sim):
    body = request_body()
    body["generationConfig"]["bogus"] = 1
    response = sim().generate(body=body)
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Invalid JSON payload received. Unknown name \"bogus\" at 'generation_config': "
        "Cannot find field.")


def test_blocked_word_gives_prompt_feedback_without_candidates(sim):
    s = sim(seed=1)
    doc = s.generate(prompt="a [blocked] thing").json()
    assert doc["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert "candidates" not in doc
    assert s.client.get("/_sim/requests").json()[0]["outcome"] == "blocked"


def test_invalid_word_gives_400(sim):
    s = sim()
    response = s.generate(prompt="an [invalid] thing")
    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"
    entry = s.client.get("/_sim/requests").json()[0]
    assert (entry["prompt"], entry["outcome"]) == ("an [invalid] thing", "invalid")


# --- admin routes --------------------------------------------------------------------


def test_request_log_and_stats(sim):
    s = sim(api_key=KEY)
    s.generate(prompt="one")
    s.generate("nope-model", prompt="two")
    s.generate(prompt="x [blocked]")
    log = s.client.get("/_sim/requests").json()
    assert [(e["model"], e["prompt"], e["status"], e["outcome"]) for e in log] == [
        (PRO, "one", 200, "success"),
        ("nope-model", None, 404, "not_found"),
        (PRO, "x [blocked]", 200, "blocked"),
    ]
    assert all(isinstance(e["t"], float | int) for e in log)
    stats = s.client.get("/_sim/stats").json()
    assert stats["requests"] == 3
    assert stats["outcomes"]["success"] == 1 and stats["outcomes"]["not_found"] == 1
    assert stats["outcomes"]["overloaded"] == 0


def test_configure_switches_faults_at_run_time(sim):
    s = sim()
    assert s.generate().status_code == 200
    response = s.client.post("/_sim/configure", json={"overloaded": 1.0})
    assert response.status_code == 200 and response.json()["overloaded"] == 1.0
    assert s.generate().status_code == 503
    s.client.post("/_sim/configure", json={"overloaded": 0, "outage": [0, 1e9]})
    assert s.generate().status_code == 503
    s.client.post("/_sim/configure", json={"outage": None})
    assert s.generate().status_code == 200
    assert s.server.core.options.outage is None


@pytest.mark.parametrize("body", [{"nope": 1}, {"overloaded": 2}, {"latency": [3, 1]}, [1]])
def test_configure_rejects_bad_options(sim, body):
    s = sim()
    response = s.client.post("/_sim/configure", json=body)
    assert response.status_code == 400
    assert s.server.core.options == SimulatorOptions(serve_retired=True)


def test_unknown_route_is_404(sim):
    s = sim()
    assert s.client.get("/v1beta/models").status_code == 404
    assert s.client.get(f"/v1beta/models/{PRO}:generateContent").status_code == 404


# --- options and parsing -------------------------------------------------------------


def test_parse_faults():
    assert parse_faults("503=0.3,429=0.1,500=0.05,timeout=0.01,blocked=0.02,no_image=0.05") == {
        "overloaded": 0.3, "rate_limited": 0.1, "internal": 0.05, "timeout": 0.01,
        "blocked": 0.02, "no_image": 0.05}
    assert parse_faults(" overloaded = 1 , ") == {"overloaded": 1.0}
    assert parse_faults("") == {}


@pytest.mark.parametrize(("spec", "says"), [
    ("502=0.1", "502"), ("503", "KEY=RATE"), ("503=x", "not a number"),
    ("503=1.5", "from 0 to 1"), ("503=0.1,overloaded=0.2", "twice"),
])
def test_parse_faults_errors(spec, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_faults(spec)


@pytest.mark.parametrize("options", [
    {"overloaded": -0.1}, {"latency": (2, 1)}, {"outage": (5,)}, {"daily_quota": -1},
    {"api_key": ""}, {"scale": 0}, {"retry_delay": -1},
])
def test_bad_options_raise(options):
    with pytest.raises(ValueError):
        SimulatorOptions(**options)


def test_simulator_options_from_manifest_extras():
    options = simulator_options({"faults": "503=0.5", "latency": "1-2", "daily_quota": 3})
    assert (options.overloaded, options.latency, options.daily_quota) == (0.5, (1.0, 2.0), 3)
    assert simulator_options({"latency": 0.5}).latency == (0.5, 0.5)
    with pytest.raises(UsageError, match="bogus"):
        simulator_options({"bogus": 1})
    with pytest.raises(UsageError, match="fault rate"):
        simulator_options({"internal": 3})


def test_draw_image_is_deterministic_and_sized():
    png = draw_image("hello", aspect_ratio="9:16", mime_type="image/png")
    assert png == draw_image("hello", aspect_ratio="9:16", mime_type="image/png")
    assert png != draw_image("hello", aspect_ratio="9:16", mime_type="image/png", variant=1)
    assert Image.open(io.BytesIO(png)).size == (192, 344)
    assert pixel_size("21:9", scale=1) == (1584, 672)
    with pytest.raises(ValueError):
        draw_image("x", aspect_ratio=None, mime_type="image/gif")


# --- in process ----------------------------------------------------------------------


async def _post(transport, model=PRO, timeout=5.0, **kw) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.invalid",
                                 timeout=timeout) as client:
        return await client.post(f"/v1beta/models/{model}:generateContent",
                                 headers={"x-goog-api-key": KEY}, json=request_body(**kw))


def test_in_process_transport_gives_the_same_shapes(sim):
    over_http = sim().generate(PRO, aspect_ratio="4:3").json()
    transport = simulator_transport(SimulatorOptions(serve_retired=True))
    in_process = asyncio.run(_post(transport, aspect_ratio="4:3")).json()
    parts = lambda d: d["candidates"][0]["content"]["parts"]  # noqa: E731
    assert parts(in_process) == parts(over_http)
    assert in_process["usageMetadata"] == over_http["usageMetadata"]
    assert asyncio.run(_post(transport, model=NANO)).json()["modelVersion"] == NANO
    assert transport.core.stats()["outcomes"]["success"] == 2

    faulty = simulator_transport(SimulatorOptions(rate_limited=1.0))
    response = asyncio.run(_post(faulty))
    assert response.status_code == 429 and "retry-after" not in response.headers


def test_in_process_latency_and_hangs_are_awaitable():
    transport = SimulatorTransport(simulator_core(SimulatorOptions(latency=(0.1, 0.1))))
    start = time.monotonic()
    assert asyncio.run(_post(transport)).status_code == 200
    assert 0.1 <= time.monotonic() - start < 0.5

    hanging = simulator_transport(SimulatorOptions(timeout=1.0))
    with pytest.raises(httpx.ReadTimeout):  # the client's read timeout is honoured
        asyncio.run(_post(hanging, timeout=0.05))

    async def with_deadline():
        async with asyncio.timeout(0.05):
            await _post(hanging, timeout=None)

    with pytest.raises(TimeoutError):
        asyncio.run(with_deadline())


def test_in_process_transport_reports_the_request_as_sent():
    events = []

    async def trace(name, info):
        events.append(name)

    async def main():
        async with httpx.AsyncClient(transport=simulator_transport(SimulatorOptions()),
                                     base_url="http://sim.invalid") as client:
            await client.post(f"/v1beta/models/{PRO}:generateContent", json=request_body(),
                              headers={"x-goog-api-key": KEY}, extensions={"trace": trace})

    asyncio.run(main())
    assert "http11.send_request_body.complete" in events


# --- serve() -------------------------------------------------------------------------


def test_serve_prints_its_url_and_stops_on_sigterm():
    code = ("from nbbatch.sim import serve, SimulatorOptions\n"
            "serve(SimulatorOptions(), port=0, on_ready=lambda url: print(url, flush=True))\n"
            "print('stopped', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        response = post(f"{url}/v1beta/models/{PRO}:generateContent",
                              headers={"x-goog-api-key": KEY}, json=request_body())
        assert response.status_code == 200
        proc.terminate()
        assert proc.wait(timeout=3) == 0
        assert proc.stdout.read().strip() == "stopped"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_url_safe_and_unpadded_base64_are_accepted_as_the_real_service_does(sim):
    s = sim()
    raw = bytes(range(250, 256)) + b"\xfb\xff"  # encodes with '+' and '/' in standard base64
    body = request_body()
    for data in (base64.urlsafe_b64encode(raw).decode(),
                 base64.b64encode(raw).decode().rstrip("="),
                 base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        body["contents"][0]["parts"][1:] = [{"inlineData": {"mimeType": "image/png",
                                                             "data": data}}]
        assert s.generate(body=body).status_code == 200, data


def test_v1_serves_generate_content_and_both_versions_describe_models(sim):
    s = sim(api_key=KEY)
    assert s.client.post(f"/v1/models/{PRO}:generateContent", json=request_body()).status_code \
        == 200
    for version in ("v1", "v1beta"):
        described = s.client.get(f"/{version}/models/{PRO}")
        assert described.status_code == 200 and described.json()["name"] == f"models/{PRO}"
        unknown = s.client.get(f"/{version}/models/gemini-9")
        assert unknown.status_code == 404 and "not found" in error_of(unknown)["message"]
    refused = httpx.get(f"{s.server.url}/v1beta/models/{PRO}",
                        headers={"x-goog-api-key": "wrong"}, verify=TLS)
    assert refused.status_code == 400 and "API key not valid" in error_of(refused)["message"]
    # Metadata requests are logged apart: they are free and never hit outages or quotas.
    assert len(s.client.get("/_sim/metadata").json()) == 5
    assert len(s.client.get("/_sim/requests").json()) == 1
