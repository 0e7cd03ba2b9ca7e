"""VertexProvider and the ADC token source, against httpx.MockTransport (no network).

google-auth is not needed: tokens come from fakes, and adc_token_source() is tested with
stand-in google.auth modules placed in sys.modules.
"""

import asyncio
import base64
import io
import json
import sys
import threading
import types

import httpx
import pytest
from PIL import Image

from nbbatch.errors import (
    ExitCode,
    FatalError,
    ProviderError,
    TransientError,
    UnknownModelError,
    UsageError,
)
from nbbatch.model import ProviderConfig
from nbbatch.providers import google
from nbbatch.providers.base import ImageRequest
from nbbatch.providers.vertex import (
    NEEDS_GOOGLE_AUTH,
    AdcTokenSource,
    VertexProvider,
    adc_token_source,
)

KEY = "AQ.Ab8RTEST-express_key_0123456789"
MODEL = "gemini-3-pro-image"
PATH = f"publishers/google/models/{MODEL}:generateContent"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    return buffer.getvalue()


def vertex_success_h(data: bytes) -> dict:
    """Reference §3.2 (h), verbatim but for the trimmed base64, replaced by a real PNG."""
    return {
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
            ]},
            "finishReason": "STOP",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE", "probabilityScore": 0.00039444832, "severity": "HARM_SEVERITY_NEGLIGIBLE"},  # noqa: E501
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE", "probabilityScore": 0.0010654529, "severity": "HARM_SEVERITY_NEGLIGIBLE", "severityScore": 0.0049325973},  # noqa: E501
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE", "probabilityScore": 0.00026658305, "severity": "HARM_SEVERITY_NEGLIGIBLE"},  # noqa: E501
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE", "probabilityScore": 0.0013701695, "severity": "HARM_SEVERITY_NEGLIGIBLE", "severityScore": 0.07626295},  # noqa: E501
                {}, {}, {}, {},
            ],
        }],
        "usageMetadata": {
            "promptTokenCount": 15, "candidatesTokenCount": 258, "totalTokenCount": 273,
            "trafficType": "ON_DEMAND",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 15}],
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 258}],
        },
        "modelVersion": "gemini-2.0-flash-exp",
        "createTime": "2025-05-01T18:48:57.671056Z",
        "responseId": "GcITaND6KPSbhMIPgoG2-Q0",
    }  # fmt: skip


# Reference §4.3, verbatim.
VERTEX_401 = {"error": {"code": 401, "message": "API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication", "status": "UNAUTHENTICATED",  # noqa: E501
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com",  # noqa: E501
        "metadata": {"service": "aiplatform.googleapis.com", "method": "google.cloud.aiplatform.v1beta1.PredictionService.GenerateContent"}}]}}  # noqa: E501
VERTEX_401_INVALID = {"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}}  # noqa: E501
VERTEX_429 = {"error": {"code": 429, "message": "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.", "status": "RESOURCE_EXHAUSTED"}}  # noqa: E501
VERTEX_429_OLD = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}  # noqa: E501
VERTEX_403 = {"error": {"code": 403, "message": "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/my-proj/locations/global/publishers/google/models/gemini-3-pro-image' (or it may not exist).", "status": "PERMISSION_DENIED"}}  # noqa: E501
VERTEX_404 = {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}  # noqa: E501


class Tokens:
    """A fake token source: a new token per call, like a refresh every time."""

    def __init__(self, quota_project=None, project=None):
        self.issued: list[str] = []
        self.threads: list[int] = []
        self.quota_project = quota_project
        self.project = project

    def __call__(self) -> str:
        self.threads.append(threading.get_ident())
        self.issued.append(f"ya29.token-{len(self.issued) + 1}")
        return self.issued[-1]


def vertex(*, api_key=None, token_source=None, transport=None, **config) -> VertexProvider:
    options = config.pop("options", {"project": "my-proj"} if api_key is None else {})
    return VertexProvider(
        ProviderConfig(name="vertex", options=options, **config),
        api_key=api_key,
        token_source=token_source,
        transport=transport,
    )


def generate(responses, request=None, *, api_key=None, token_source=None, **config):
    """One generate() against canned responses, in order; returns (result or error, requests)."""
    seen: list[httpx.Request] = []
    answers = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    async def main():
        provider = VertexProvider(
            ProviderConfig(name="vertex", **config),
            api_key=api_key,
            token_source=token_source,
            transport=httpx.MockTransport(handler),
        )
        try:
            return await provider.generate(request or ImageRequest("a cat", MODEL))
        except ProviderError as error:
            return error
        finally:
            await provider.aclose()

    return asyncio.run(main()), seen


OK = (200, vertex_success_h(png()))
ADC = {"options": {"project": "my-proj"}}


# --- URLs and headers ----------------------------------------------------------------------

def test_express_mode_url_headers_and_body():
    request = ImageRequest("a cat", MODEL, aspect_ratio="16:9", image_size="2K")
    result, [sent] = generate([OK], request, api_key=KEY, api_key_env="VERTEX_API_KEY")

    assert result.data == png()
    assert str(sent.url) == f"https://aiplatform.googleapis.com/v1/{PATH}"
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers and "x-goog-user-project" not in sent.headers
    assert json.loads(sent.content) == google.build_body(request)


def test_express_mode_base_url_override():
    _, [sent] = generate([OK], api_key=KEY, base_url="http://127.0.0.1:8765/")
    assert str(sent.url) == f"http://127.0.0.1:8765/v1/{PATH}"


@pytest.mark.parametrize(("location", "base_url", "url"), [
    (None, None, f"https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/{PATH}"),
    ("global", None, f"https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/{PATH}"),
    ("us-central1", None, f"https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/{PATH}"),
    ("europe-west4", None, f"https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4/{PATH}"),
    ("eu", None, f"https://aiplatform.eu.rep.googleapis.com/v1/projects/my-proj/locations/eu/{PATH}"),
    ("us-central1", "http://127.0.0.1:9/", f"http://127.0.0.1:9/v1/projects/my-proj/locations/us-central1/{PATH}"),
], ids=["default", "global", "region", "region-2", "multi-region", "base-url"])  # fmt: skip
def test_adc_urls(location, base_url, url):
    options = {"project": "my-proj"} | ({"location": location} if location else {})
    _, [sent] = generate([OK], token_source=Tokens(), options=options, base_url=base_url)
    assert str(sent.url) == url


def test_adc_headers_without_a_quota_project():
    _, [sent] = generate([OK], token_source=Tokens(), **ADC)
    assert sent.headers["authorization"] == "Bearer ya29.token-1"
    assert "x-goog-api-key" not in sent.headers and "x-goog-user-project" not in sent.headers


def test_adc_sends_the_quota_project():
    _, [sent] = generate([OK], token_source=Tokens(quota_project="billing-proj"), **ADC)
    assert sent.headers["x-goog-user-project"] == "billing-proj"


@pytest.mark.parametrize("model", [MODEL, f"models/{MODEL}", f"publishers/google/models/{MODEL}"])
def test_pasted_model_ids(model):
    _, [sent] = generate([OK], ImageRequest("a cat", model), api_key=KEY)
    assert str(sent.url) == f"https://aiplatform.googleapis.com/v1/{PATH}"


def test_domain_scoped_project():
    options = {"project": "example.com:my-proj"}
    _, [sent] = generate([OK], token_source=Tokens(), options=options)
    assert sent.url.raw_path.decode().startswith("/v1/projects/example.com:my-proj/locations/")


# --- Configuration errors ------------------------------------------------------------------

def test_adc_mode_needs_a_project():
    with pytest.raises(UsageError) as caught:
        vertex(token_source=Tokens(), options={})
    assert "providers.vertex.project" in caught.value.message
    assert "api_key_env" in caught.value.message


def test_missing_project_names_the_one_adc_found():
    with pytest.raises(UsageError, match="your credentials name project 'adc-proj'"):
        vertex(token_source=Tokens(project="adc-proj"), options={"location": "global"})


def test_express_mode_needs_no_project():
    url = vertex(api_key=KEY, options={}).url_for("gemini-3-pro-image")
    assert url == ("https://aiplatform.googleapis.com/v1/publishers/google/models/"
                   "gemini-3-pro-image:generateContent")


@pytest.mark.parametrize(("options", "field"), [
    ({"project": "my-proj", "location": "evil.example/x"}, "providers.vertex.location"),
    ({"project": "my proj/.."}, "providers.vertex.project"),
])  # fmt: skip
def test_bad_project_or_location(options, field):
    with pytest.raises(UsageError, match=field):
        vertex(token_source=Tokens(), options=options)


@pytest.mark.parametrize("auth", [{}, {"api_key": KEY, "token_source": Tokens()}])
def test_exactly_one_way_to_authenticate(auth):
    with pytest.raises(ValueError, match="exactly one"):
        vertex(**auth)


# --- 401: one fresh token, one more try, in ADC mode only ----------------------------------

def test_401_refreshes_the_token_once_and_retries():
    tokens = Tokens()
    result, seen = generate([(401, VERTEX_401_INVALID), OK], token_source=tokens, **ADC)

    assert result.data == png()
    assert tokens.issued == ["ya29.token-1", "ya29.token-2"]
    assert [r.headers["authorization"] for r in seen] == [
        "Bearer ya29.token-1", "Bearer ya29.token-2"
    ]
    assert seen[0].content == seen[1].content


def test_second_401_is_fatal():
    tokens = Tokens()
    error, seen = generate([(401, VERTEX_401_INVALID)] * 2, token_source=tokens, **ADC)

    assert type(error) is FatalError and error.exit_code == ExitCode.AUTH
    assert (error.provider, error.status) == ("vertex", 401)
    assert len(seen) == 2 and len(tokens.issued) == 2
    assert "gcloud auth application-default login" in error.message


def test_401_invalidates_the_refused_token():
    class Invalidating(Tokens):
        refused: list[str]

        def invalidate(self, token):
            self.refused.append(token)

    tokens = Invalidating()
    tokens.refused = []
    generate([(401, VERTEX_401_INVALID), OK], token_source=tokens, **ADC)
    assert tokens.refused == ["ya29.token-1"]


def test_401_in_express_mode_is_fatal_at_once():
    error, seen = generate([(401, VERTEX_401), OK], api_key=KEY, api_key_env="VERTEX_API_KEY")

    assert type(error) is FatalError and len(seen) == 1
    assert error.message.startswith("API keys are not supported by this API.")
    assert "Check VERTEX_API_KEY: Vertex AI takes only express-mode API keys" in error.message


def test_other_errors_are_not_retried_in_adc_mode():
    tokens = Tokens()
    error, seen = generate([(403, VERTEX_403), OK], token_source=tokens, **ADC)
    assert type(error) is FatalError and len(seen) == 1 and len(tokens.issued) == 1


# --- Vertex responses ----------------------------------------------------------------------

def test_vertex_success_body_h():
    result, _ = generate([OK], token_source=Tokens(), **ADC)
    assert result.data == png() and result.mime_type == "image/png"
    assert result.model == "gemini-2.0-flash-exp"
    assert result.request_id == "GcITaND6KPSbhMIPgoG2-Q0"
    assert result.usage["trafficType"] == "ON_DEMAND"


@pytest.mark.parametrize("body", [VERTEX_429, VERTEX_429_OLD], ids=["dsq", "older-form"])
def test_vertex_429_is_an_overload(body):
    error, seen = generate([(429, body)], token_source=Tokens(), **ADC)
    assert type(error) is TransientError and len(seen) == 1
    assert error.overload and error.retry_after is None and not error.possibly_billed
    assert error.message == body["error"]["message"]


def test_vertex_403_is_fatal_and_names_the_project():
    error, _ = generate([(403, VERTEX_403)], token_source=Tokens(), **ADC)
    assert type(error) is FatalError and error.exit_code == ExitCode.AUTH
    assert error.message.startswith("Permission 'aiplatform.endpoints.predict' denied")
    assert "project my-proj has the Vertex AI API enabled" in error.message


def test_vertex_404_names_model_location_and_project():
    options = {"project": "my-proj", "location": "us-central1"}
    error, _ = generate([(404, VERTEX_404)], token_source=Tokens(), options=options)
    assert type(error) is UnknownModelError and error.exit_code == ExitCode.USAGE
    assert error.message == (
        "Requested entity was not found. (check the model name, that location us-central1 "
        "serves it, and project my-proj)"
    )


def test_tokens_and_keys_never_appear_in_messages():
    echo = {"error": {"code": 400, "message": "bad header Bearer ya29.token-1"}}
    error, _ = generate([(400, echo)], token_source=Tokens(), **ADC)
    assert "ya29" not in error.message

    echo = {"error": {"code": 400, "message": f"bad key {KEY}"}}
    error, _ = generate([(400, echo)], api_key=KEY)
    assert KEY not in error.message


# --- Token sources -------------------------------------------------------------------------

def test_blocking_token_source_runs_off_the_event_loop():
    tokens = Tokens()
    loop_thread: list[int] = []

    def handler(request):
        loop_thread.append(threading.get_ident())
        return httpx.Response(OK[0], json=OK[1])

    async def main():
        provider = vertex(token_source=tokens, transport=httpx.MockTransport(handler))
        try:
            await provider.generate(ImageRequest("a cat", MODEL))
        finally:
            await provider.aclose()

    asyncio.run(main())
    assert tokens.threads and tokens.threads[0] != loop_thread[0]


def test_async_token_source():
    async def token():
        return "ya29.async"

    _, [sent] = generate([OK], token_source=token, **ADC)
    assert sent.headers["authorization"] == "Bearer ya29.async"


def test_token_source_errors_carry_the_provider_name():
    def broken():
        raise TransientError("could not reach Google to refresh the access token: down")

    error, seen = generate([OK], token_source=broken, **ADC)
    assert type(error) is TransientError and error.provider == "vertex" and not seen


def test_a_hanging_token_source_times_out():
    async def never():
        await asyncio.Event().wait()

    error, seen = generate([OK], token_source=never, timeout=0.001, **ADC)
    assert type(error) is TransientError and "no access token" in error.message and not seen


@pytest.mark.parametrize("token", ["", None])
def test_empty_token_is_fatal(token):
    error, seen = generate([OK], token_source=lambda: token, **ADC)
    assert type(error) is FatalError and not seen


# --- adc_token_source ----------------------------------------------------------------------

def test_adc_without_google_auth_is_a_usage_error(monkeypatch):
    for name in ("google", "google.auth", "google.auth.transport.requests"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError
    with pytest.raises(UsageError) as caught:
        adc_token_source()
    assert caught.value.message == NEEDS_GOOGLE_AUTH == (
        "Vertex AI with Application Default Credentials needs google-auth: "
        "pip install 'nbbatch[vertex]' (or use an express-mode API key)"
    )


class FakeCredentials:
    def __init__(self, quota_project_id=None):
        self.token = None
        self.expired = False
        self.quota_project_id = quota_project_id
        self.refreshes: list[int] = []  # the thread each refresh ran in
        self.fail: Exception | None = None

    @property
    def valid(self):
        return self.token is not None and not self.expired

    def refresh(self, request):
        assert request == "requests-transport"
        self.refreshes.append(threading.get_ident())
        if self.fail:
            raise self.fail
        self.token, self.expired = f"ya29.adc-{len(self.refreshes)}", False


@pytest.fixture
def fake_google_auth(monkeypatch):
    """Stand-ins for google.auth, .exceptions and .transport.requests; returns their state."""
    exceptions = types.ModuleType("google.auth.exceptions")
    exceptions.GoogleAuthError = type("GoogleAuthError", (Exception,), {})
    for name in ("DefaultCredentialsError", "RefreshError", "TransportError"):
        setattr(exceptions, name, type(name, (exceptions.GoogleAuthError,), {}))
    state = types.SimpleNamespace(
        credentials=FakeCredentials(), project="adc-proj", error=None, scopes=None,
        exceptions=exceptions,
    )

    def default(scopes=None):
        state.scopes = scopes
        if state.error:
            raise state.error
        return state.credentials, state.project

    google_mod, auth = types.ModuleType("google"), types.ModuleType("google.auth")
    transport = types.ModuleType("google.auth.transport")
    requests_mod = types.ModuleType("google.auth.transport.requests")
    requests_mod.Request = lambda: "requests-transport"
    auth.default, auth.exceptions, auth.transport = default, exceptions, transport
    google_mod.auth, transport.requests = auth, requests_mod
    google_mod.__path__ = auth.__path__ = transport.__path__ = []
    for module in (google_mod, auth, exceptions, transport, requests_mod):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return state


def test_adc_not_configured_is_a_usage_error(fake_google_auth):
    fake_google_auth.error = fake_google_auth.exceptions.DefaultCredentialsError(
        "Your default credentials were not found."
    )
    with pytest.raises(UsageError) as caught:
        adc_token_source()
    message = caught.value.message
    assert "Your default credentials were not found." in message
    assert "gcloud auth application-default login" in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


def test_adc_tokens_are_refreshed_only_when_needed(fake_google_auth):
    source = adc_token_source()
    credentials = fake_google_auth.credentials
    assert isinstance(source, AdcTokenSource) and source.project == "adc-proj"
    assert fake_google_auth.scopes == ["https://www.googleapis.com/auth/cloud-platform"]

    assert source() == "ya29.adc-1"  # no token yet
    assert source() == "ya29.adc-1"  # still valid
    credentials.expired = True
    assert source() == "ya29.adc-2"
    source.invalidate("ya29.adc-1")  # an old token refused: the current one is fine
    assert source() == "ya29.adc-2"
    source.invalidate("ya29.adc-2")
    assert source() == "ya29.adc-3"
    assert len(credentials.refreshes) == 3


def test_adc_quota_project(fake_google_auth):
    assert adc_token_source().quota_project is None
    fake_google_auth.credentials.quota_project_id = "billing-proj"
    assert adc_token_source().quota_project == "billing-proj"


@pytest.mark.parametrize(("error", "retryable", "outcome"), [
    ("RefreshError", False, FatalError),
    ("RefreshError", True, TransientError),
    ("TransportError", False, TransientError),
])  # fmt: skip
def test_adc_refresh_failures(fake_google_auth, error, retryable, outcome):
    failure = getattr(fake_google_auth.exceptions, error)("invalid_grant: Bad Request")
    failure.retryable = retryable
    fake_google_auth.credentials.fail = failure
    with pytest.raises(ProviderError) as caught:
        adc_token_source()()
    assert type(caught.value) is outcome and "invalid_grant: Bad Request" in caught.value.message
    if outcome is FatalError:
        assert "gcloud auth application-default login" in caught.value.message


def test_provider_with_adc_refreshes_in_a_thread_after_a_401(fake_google_auth):
    fake_google_auth.credentials.quota_project_id = "billing-proj"
    seen: list[httpx.Request] = []
    answers = [(401, VERTEX_401_INVALID), OK]

    def handler(request):
        seen.append(request)
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    async def main():
        provider = vertex(token_source=adc_token_source(), transport=httpx.MockTransport(handler))
        try:
            return await provider.generate(ImageRequest("a cat", MODEL)), threading.get_ident()
        finally:
            await provider.aclose()

    result, loop_thread = asyncio.run(main())
    assert result.data == png()
    assert [r.headers["authorization"] for r in seen] == ["Bearer ya29.adc-1", "Bearer ya29.adc-2"]
    assert {r.headers["x-goog-user-project"] for r in seen} == {"billing-proj"}
    refreshes = fake_google_auth.credentials.refreshes
    assert len(refreshes) == 2 and loop_thread not in refreshes
