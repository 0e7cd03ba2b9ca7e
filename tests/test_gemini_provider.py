"""GeminiProvider and the shared HTTP plumbing, against httpx.MockTransport (no network)."""

import asyncio
import base64
import io
import json
import time

import httpcore
import httpx
import pytest
from PIL import Image

from nbbatch.errors import FatalError, ProviderError, TransientError
from nbbatch.model import ProviderConfig
from nbbatch.providers import gemini
from nbbatch.providers.base import ImageRequest, ReferenceImage
from nbbatch.providers.gemini import GeminiProvider
from nbbatch.providers.wire import post_json, redactor, retry_after_from_headers

KEY = "AIzaSyTEST-key_0123456789abcdefghijklm"
MODEL = "gemini-2.5-flash-image"


def png(color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, "PNG")
    return buffer.getvalue()


def success_body(data: bytes) -> dict:
    return {
        "candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
        ], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1290},
        "modelVersion": "gemini-2.5-flash-image",
        "responseId": "resp-1",
    }  # fmt: skip


def generate(handler, request=None, **config):
    """Run one generate() through a MockTransport; returns (result or error, requests seen)."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request):
        seen.append(request)
        response = handler(request)
        return await response if asyncio.iscoroutine(response) else response

    return generate_with(httpx.MockTransport(record), request, **config), seen


def generate_with(transport, request=None, **config):
    async def main():
        provider = GeminiProvider(ProviderConfig(name="gemini", **config), KEY, transport=transport)
        try:
            return await provider.generate(request or ImageRequest("a cat", MODEL))
        except ProviderError as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main())


# --- The request ---------------------------------------------------------------------------

def test_request_url_headers_and_body():
    ref1, ref2 = png("blue"), png("green")
    request = ImageRequest(
        "An office group photo", "gemini-3-pro-image", aspect_ratio="5:4", image_size="2K",
        references=(ReferenceImage("image/png", ref1), ReferenceImage("image/jpeg", ref2)),
    )
    result, seen = generate(lambda r: httpx.Response(200, json=success_body(png())), request)

    assert result.data == png() and result.request_id == "resp-1"
    [sent] = seen
    assert sent.method == "POST"
    assert str(sent.url) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-3-pro-image:generateContent"
    )
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    assert "key" not in sent.url.params  # the key travels in the header only
    assert json.loads(sent.content) == {
        "contents": [{"role": "user", "parts": [
            {"text": "An office group photo"},
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(ref1).decode()}},
            {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(ref2).decode()}},
        ]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "5:4", "imageSize": "2K"},
        },
    }  # fmt: skip


def test_image_config_leaves_out_unset_options():
    _, seen = generate(
        lambda r: httpx.Response(200, json=success_body(png())),
        ImageRequest("a cat", "gemini-2.5-flash-image", aspect_ratio="16:9"),
    )
    config = json.loads(seen[0].content)["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "16:9"}

    _, seen = generate(lambda r: httpx.Response(200, json=success_body(png())))
    assert "imageConfig" not in json.loads(seen[0].content)["generationConfig"]


def test_base_url_and_model_prefix():
    request = ImageRequest("a cat", "models/gemini-3.1-flash-image")
    _, seen = generate(
        lambda r: httpx.Response(200, json=success_body(png())),
        request,
        base_url="http://127.0.0.1:8765/",
    )
    assert str(seen[0].url) == (
        "http://127.0.0.1:8765/v1beta/models/gemini-3.1-flash-image:generateContent"
    )


def test_provider_name_defaults_to_the_config_name():
    config, transport = ProviderConfig(name="gemini-backup"), httpx.MockTransport(print)
    assert GeminiProvider(config, KEY, transport=transport).name == "gemini-backup"
    assert GeminiProvider(config, KEY, transport=transport, name="other").name == "other"


def test_responses_are_classified_with_the_provider_name():
    message = "The model is overloaded. Please try again later."
    overloaded = {"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}
    error, _ = generate(lambda r: httpx.Response(503, json=overloaded))
    assert isinstance(error, TransientError) and error.overload
    assert (error.provider, error.status) == ("gemini", 503)


def test_rejected_key_names_the_configured_variable():
    body = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "details": [{"reason": "API_KEY_INVALID"}]}}  # fmt: skip
    error, _ = generate(lambda r: httpx.Response(400, json=body), api_key_env="MY_GEMINI_KEY")
    assert type(error) is FatalError and "MY_GEMINI_KEY" in error.message


# --- Transport failures --------------------------------------------------------------------

class DripStream(httpx.AsyncByteStream):
    """An endless body, one chunk at a time, counting what was pulled."""

    def __init__(self, chunk: bytes = b"x" * 1024, delay: float = 0.0) -> None:
        self.chunk, self.delay, self.pulled, self.closed = chunk, delay, 0, False

    async def __aiter__(self):
        while True:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.pulled += 1
            yield self.chunk

    async def aclose(self) -> None:
        self.closed = True


def test_body_over_the_cap_is_rejected_without_reading_it_all(monkeypatch):
    monkeypatch.setattr(gemini, "MAX_RESPONSE_BYTES", 10 * 1024)
    stream = DripStream()
    error, _ = generate(lambda r: httpx.Response(200, stream=stream))
    assert isinstance(error, TransientError)
    assert error.message == "response larger than 10240 bytes"
    assert error.possibly_billed
    assert stream.pulled == 11 and stream.closed


def test_declared_length_over_the_cap_is_rejected_before_reading(monkeypatch):
    monkeypatch.setattr(gemini, "MAX_RESPONSE_BYTES", 10 * 1024)
    stream = DripStream()
    headers = {"Content-Length": str(300 * 1024 * 1024)}
    error, _ = generate(lambda r: httpx.Response(200, headers=headers, stream=stream))
    assert isinstance(error, TransientError) and "larger than" in error.message
    assert stream.pulled == 0


def test_total_timeout_fires_on_a_slow_drip():
    # Every chunk arrives well within any per-read timeout; only a total deadline stops it.
    stream = DripStream(b"{", delay=0.02)
    start = time.monotonic()
    error, _ = generate(lambda r: httpx.Response(200, stream=stream), timeout=0.2)
    assert time.monotonic() - start < 1.0
    assert isinstance(error, TransientError)
    assert error.message == "no complete response within 0.2 s"
    assert error.possibly_billed  # the server was already answering
    assert stream.pulled >= 3 and stream.closed


def test_total_timeout_while_waiting_for_headers():
    async def slow(request):
        await asyncio.sleep(5)

    error, _ = generate(slow, timeout=0.1)
    assert isinstance(error, TransientError) and "within 0.1 s" in error.message


@pytest.mark.parametrize(
    ("exc", "billed"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("no connection"), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    ],
)
def test_transport_failures_are_transient(exc, billed):
    def fail(request):
        raise exc

    error, _ = generate(fail)
    assert type(error) is TransientError
    assert error.possibly_billed is billed
    assert error.provider == "gemini" and error.status is None
    assert str(exc) in error.message


def test_unsupported_scheme_is_fatal():
    def refuse(request):  # what httpx's real transport does with an ftp:// base_url
        raise httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'.")

    error, _ = generate(refuse, base_url="ftp://example.com")
    assert isinstance(error, FatalError) and "base_url" in error.message


def test_redirects_are_not_followed():
    def handler(request):
        if request.url.host == "generativelanguage.googleapis.com":
            return httpx.Response(307, headers={"Location": "https://evil.example/collect"})
        return httpx.Response(200, json=success_body(png()))

    error, seen = generate(handler)
    assert isinstance(error, FatalError) and "redirect" in error.message
    assert [r.url.host for r in seen] == ["generativelanguage.googleapis.com"]


# --- httpx's real stack over fake sockets: what MockTransport cannot show ----------------

class FakeSocket(httpcore.AsyncNetworkStream):
    def __init__(self, reply: bytes | None) -> None:
        self.reply, self.written = reply, b""

    async def read(self, max_bytes, timeout=None):
        if self.reply is None:
            await asyncio.sleep(10)  # the server took the request and is still thinking
        chunk, self.reply = self.reply[:max_bytes], self.reply[max_bytes:]
        return chunk

    async def write(self, buffer, timeout=None):
        self.written += buffer

    async def aclose(self):
        pass

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return self

    def get_extra_info(self, info):
        return None


class FakeNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self, reply: bytes | None = None, connect_hangs: bool = False) -> None:
        self.reply, self.connect_hangs, self.sockets = reply, connect_hangs, []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if self.connect_hangs:
            await asyncio.sleep(10)
        self.sockets.append(FakeSocket(self.reply))
        return self.sockets[-1]

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)


def real_transport(network: FakeNetwork) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=network)  # no sockets
    return transport


def test_real_stack_sends_the_key_in_a_header_and_reads_the_image():
    body = json.dumps(success_body(png())).encode()
    network = FakeNetwork(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    result = generate_with(real_transport(network), base_url="http://gemini.test")
    assert result.data == png()
    sent = network.sockets[0].written
    assert sent.startswith(b"POST /v1beta/models/gemini-2.5-flash-image:generateContent HTTP/1.1")
    assert f"x-goog-api-key: {KEY}".encode() in sent


def test_real_stack_timeout_after_sending_may_be_billed():
    network = FakeNetwork(reply=None)
    error = generate_with(real_transport(network), base_url="http://gemini.test", timeout=0.1)
    assert isinstance(error, TransientError) and error.possibly_billed


def test_real_stack_timeout_while_connecting_is_not_billed():
    network = FakeNetwork(connect_hangs=True)
    error = generate_with(real_transport(network), base_url="http://gemini.test", timeout=0.1)
    assert isinstance(error, TransientError) and not error.possibly_billed
    assert error.message == "no complete response within 0.1 s"


# --- The key stays secret ------------------------------------------------------------------

@pytest.mark.parametrize(
    "respond",
    [
        lambda r: httpx.Response(400, json={"error": {
            "code": 400, "message": f"API key not valid: {r.headers['x-goog-api-key']}",
            "details": [{"reason": "API_KEY_INVALID"}]}}),
        lambda r: httpx.Response(403, json={"error": {"message": f"key {KEY} was leaked"}}),
        lambda r: httpx.Response(429, json={"error": {"message": f"{KEY}: slow down"}}),
        lambda r: httpx.Response(502, text=f"<html><title>bad gateway {KEY}</title></html>"),
        lambda r: httpx.Response(200, text=f"not json {KEY}"),
        lambda r: httpx.Response(301, headers={"Location": f"https://x.example/?key={KEY}"}),
        lambda r: httpx.Response(200, json={"candidates": [
            {"finishReason": "SAFETY", "finishMessage": f"echo {KEY}"}]}),
    ],
)  # fmt: skip
def test_key_never_appears_in_errors(respond):
    error, _ = generate(respond)
    assert isinstance(error, ProviderError)
    assert KEY not in error.message and KEY not in str(error) and KEY not in repr(error)
    assert "***" in error.message


def test_key_is_redacted_from_transport_errors():
    def fail(request):
        raise httpx.ConnectError(f"cannot reach {request.url}?key={KEY}")

    error, _ = generate(fail)
    assert isinstance(error, TransientError) and KEY not in error.message


def test_aclose_closes_the_client():
    async def main():
        transport = real_transport(FakeNetwork())
        provider = GeminiProvider(ProviderConfig(name="gemini"), KEY, transport=transport)
        await provider.aclose()
        return provider._client.is_closed

    assert asyncio.run(main())


# --- http helpers --------------------------------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:50 GMT"}, 30.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:50 -0000"}, 30.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0),  # in the past: no wait
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
    ],
)
def test_retry_after_from_headers(headers, expected):
    assert retry_after_from_headers(headers, now=NOW) == expected


def test_retry_after_accepts_httpx_headers():
    assert retry_after_from_headers(httpx.Headers({"RETRY-AFTER": "3"})) == 3.0


def test_redactor():
    redact = redactor("key+with/slash")
    assert redact("x key+with/slash y key%2Bwith%2Fslash z key%2bwith%2fslash") == \
        "x *** y *** z ***"
    assert redactor("")("nothing to hide") == "nothing to hide"
    assert redactor(None)("nothing to hide") == "nothing to hide"


def test_post_json_returns_any_status_with_body_and_latency():
    async def main():
        transport = httpx.MockTransport(lambda r: httpx.Response(418, content=b"teapot"))
        async with httpx.AsyncClient(transport=transport) as client:
            return await post_json(
                client, "https://api.example/x", json={"a": 1}, headers={}, timeout=5,
                max_bytes=100, provider="p", redact=str,
            )

    raw = asyncio.run(main())
    assert (raw.status, raw.body) == (418, b"teapot")
    assert raw.latency >= 0


def test_response_modalities_is_a_provider_option():
    _, seen = generate(lambda r: httpx.Response(200, json=success_body(png())),
                       options={"response_modalities": ["IMAGE"]})
    assert json.loads(seen[0].content)["generationConfig"]["responseModalities"] == ["IMAGE"]


@pytest.mark.parametrize("value", [["TEXT"], [], "IMAGE", ["IMAGE", "AUDIO"]])
def test_response_modalities_must_ask_for_an_image(value):
    from nbbatch.errors import OptionError

    with pytest.raises(OptionError, match="response_modalities"):
        gemini.check_options({"response_modalities": value})
