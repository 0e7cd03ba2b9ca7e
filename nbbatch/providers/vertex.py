"""Vertex AI: the Gemini image models through aiplatform.googleapis.com.

Two ways in:

* express mode, an API key: `POST {base}/v1/publishers/google/models/{model}:generateContent`
  with `x-goog-api-key`;
* Application Default Credentials: `POST {host}/v1/projects/{project}/locations/{location}/
  publishers/google/models/{model}:generateContent` with an OAuth2 bearer token.

The JSON is the Gemini API's, so the body and the classification come from google.py. One
request per call, as everywhere; the only retry here is the one a refused access token earns
(tokens last an hour, runs last longer). google-auth is optional and imported only for ADC.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from nbbatch.errors import FatalError, OptionError, ProviderError, TransientError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers import google
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest, Provider
from nbbatch.providers.gemini import CHECK_BYTES, CHECK_TIMEOUT, MAX_RESPONSE_BYTES
from nbbatch.providers.wire import RawResponse, get_bytes, new_client, post_json, redactor
from nbbatch.redaction import Redactor

DEFAULT_HOST = "https://aiplatform.googleapis.com"
DEFAULT_LOCATION = "global"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

# A function returning a current access token; it may block (it is run in a thread) or be
# async. Optional extras, as AdcTokenSource has them: `quota_project` (sent as
# x-goog-user-project), `project` (named in hints) and `invalidate(token)` (that token was
# refused: the next call must return another).
TokenSource = Callable[[], Awaitable[str] | str]

_LOCATION = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")  # global, us-central1, europe-west4, eu
_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]*[a-z0-9]")  # ids, numbers, "example.com:my-project"
_MULTI_REGIONS = frozenset({"us", "eu"})  # served from aiplatform.{location}.rep.googleapis.com
_ADC_HELP = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file"
)
NEEDS_GOOGLE_AUTH = (
    "Vertex AI with Application Default Credentials needs google-auth: "
    "pip install 'nbbatch[vertex]' (or use an express-mode API key)"
)


def create(config: ProviderConfig, api_key: str | None,
           transport: httpx.AsyncBaseTransport | None) -> VertexProvider:
    """An express-mode key when api_key_env is set, else Application Default Credentials."""
    if api_key is not None:
        return VertexProvider(config, api_key=api_key, transport=transport)
    return VertexProvider(config, token_source=adc_token_source(), transport=transport)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    for key, pattern in (("project", _PROJECT), ("location", _LOCATION)):
        value = options.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise OptionError(key, f"{value!r} is not a valid Google Cloud {key}")
    return google.check_modalities(options)


class VertexProvider(Provider):
    def __init__(
        self,
        config: ProviderConfig,
        *,
        api_key: str | None = None,
        token_source: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str | None = None,
    ) -> None:
        if (api_key is None) == (token_source is None):
            raise ValueError("VertexProvider takes exactly one of api_key and token_source")
        self.name = name or config.name
        self.config = config
        self._api_key = api_key
        self._token_source = token_source
        self._key_redact = redactor(api_key)
        field = f"providers.{config.name}"
        if api_key is not None:
            variable = config.api_key_env or "the API key variable"
            self._host = (config.base_url or DEFAULT_HOST).rstrip("/")
            self._prefix = f"{self._host}/v1"
            self._hints = {
                401: f"Check {variable}: Vertex AI takes only express-mode API keys; without "
                "api_key_env nbbatch uses Application Default Credentials.",
                403: f"Check {variable} and that it may use Vertex AI.",
                404: "(check the model name)",
            }
        else:
            project = _setting(config.options, "project", _PROJECT, field)
            if project is None:
                found = getattr(token_source, "project", None)
                named = f" (your credentials name project '{found}')" if found else ""
                raise UsageError(
                    "Vertex AI with Application Default Credentials needs a Google Cloud "
                    f"project: set {field}.project in the manifest{named}, or set "
                    f"{field}.api_key_env to use an express-mode API key."
                )
            location = _setting(config.options, "location", _LOCATION, field) or DEFAULT_LOCATION
            self._host = (config.base_url or _host_for(location)).rstrip("/")
            self._prefix = (f"{self._host}/v1/projects/{quote(project, safe=':')}"
                            f"/locations/{location}")
            self._hints = {
                401: f"Check the Application Default Credentials: {_ADC_HELP}.",
                403: f"Check that project {project} has the Vertex AI API enabled and that "
                "these credentials may use it (role roles/aiplatform.user).",
                404: f"(check the model name, that location {location} serves it, and "
                f"project {project})",
            }
        self._client = new_client(transport, config.timeout)
        self._modalities = config.options.get("response_modalities") or google.MODALITIES

    def url_for(self, model: str) -> str:
        # People paste ids from the console ("publishers/google/models/…") or ListModels.
        model = model.removeprefix("publishers/google/").removeprefix("models/")
        return f"{self._prefix}/publishers/google/models/{quote(model, safe='')}:generateContent"

    async def check(self, model: str) -> None:
        """The publisher model resource (Model Garden): it says whether the key or the
        credentials are accepted. Whether a location serves a model it does not say
        reliably, so a 404 leaves that to the first generation request."""
        model = model.removeprefix("publishers/google/").removeprefix("models/")
        url = f"{self._host}/v1beta1/publishers/google/models/{quote(model, safe='')}"
        try:
            if self._api_key is not None:
                headers, redact = {"x-goog-api-key": self._api_key}, self._key_redact
            else:
                token = await self._token()
                headers, redact = self._bearer(token), redactor(token)
            raw = await get_bytes(self._client, url, headers=headers, timeout=min(
                self.config.timeout, CHECK_TIMEOUT), max_bytes=CHECK_BYTES, provider=self.name,
                redact=redact)
        except TransientError as exc:
            raise CheckUnavailable(exc.message) from None
        if raw.status == 404:
            raise CheckUnavailable("the publisher model route answered 404")
        google.check_answer(raw.status, raw.headers, raw.body, provider=self.name,
                            redact=redact, model=model, key_env=self.config.api_key_env,
                            hints=self._hints)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        url = self.url_for(request.model)
        body = google.build_body(request, self._modalities)
        if self._api_key is not None:
            headers = {"x-goog-api-key": self._api_key}
            raw = await self._post(url, body, headers, self._key_redact)
            return self._classify(raw, request.model, self._key_redact)
        token = await self._token()
        raw = await self._post(url, body, self._bearer(token), redactor(token))
        if raw.status == 401:  # most likely expired: one fresh token, one more try
            invalidate = getattr(self._token_source, "invalidate", None)
            if callable(invalidate):
                invalidate(token)
            token = await self._token()
            raw = await self._post(url, body, self._bearer(token), redactor(token))
        return self._classify(raw, request.model, redactor(token))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(
        self, url: str, body: dict[str, Any], headers: dict[str, str], redact: Redactor
    ) -> RawResponse:
        return await post_json(
            self._client,
            url,
            json=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=self.config.timeout,
            max_bytes=MAX_RESPONSE_BYTES,
            provider=self.name,
            redact=redact,
        )

    def _classify(self, raw: RawResponse, model: str, redact: Redactor) -> GeneratedImage:
        return google.classify(
            raw.status,
            raw.headers,
            raw.body,
            provider=self.name,
            redact=redact,
            model=model,
            key_env=self.config.api_key_env if self._api_key is not None else None,
            hints=self._hints,
        )

    def _bearer(self, token: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        quota_project = getattr(self._token_source, "quota_project", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    async def _token(self) -> str:
        """A current access token; a blocking source runs in a thread, off the event loop."""
        source = self._token_source
        assert source is not None
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                if _is_async(source):
                    token = await source()  # type: ignore[misc]
                else:
                    token = await asyncio.to_thread(source)
                    if inspect.isawaitable(token):
                        token = await token
        except TimeoutError:
            message = f"no access token within {timeout:g} s"
            raise TransientError(message, provider=self.name) from None
        except ProviderError as exc:
            exc.provider = exc.provider or self.name
            raise
        if not isinstance(token, str) or not token:
            raise FatalError("the access token source returned no token", provider=self.name)
        return token


class AdcTokenSource:
    """Access tokens from Application Default Credentials, refreshed when expired or refused.

    Calls block (refreshing talks to Google), so VertexProvider makes them in a thread; a
    lock keeps concurrent callers to one refresh.
    """

    def __init__(
        self, credentials: Any, request: Any, errors: Any, *, project: str | None = None
    ) -> None:
        self._credentials = credentials
        self._request = request  # google.auth.transport.requests.Request
        self._errors = errors  # the google.auth.exceptions module
        self.project = project  # the project ADC names, if any: a hint, never used unasked
        self._lock = threading.Lock()
        self._refused: str | None = None

    @property
    def quota_project(self) -> str | None:
        return getattr(self._credentials, "quota_project_id", None) or None

    def __call__(self) -> str:
        with self._lock:
            credentials = self._credentials
            if not credentials.valid or credentials.token == self._refused:
                self._refresh()
            return str(credentials.token)

    def invalidate(self, token: str) -> None:
        """`token` was refused (HTTP 401): the next call fetches a new one."""
        self._refused = token  # no lock: a refresh may hold it, and this runs on the loop

    def _refresh(self) -> None:
        try:
            self._credentials.refresh(self._request)
        except self._errors.RefreshError as exc:
            detail = _short(exc)
            if getattr(exc, "retryable", False):
                raise TransientError(f"could not refresh the access token: {detail}") from None
            raise FatalError(
                f"Google refused to refresh the access token ({detail}): {_ADC_HELP}."
            ) from None
        except self._errors.TransportError as exc:
            message = f"could not reach Google to refresh the access token: {_short(exc)}"
            raise TransientError(message) from None


def adc_token_source() -> AdcTokenSource:
    """Application Default Credentials as a TokenSource. UsageError when unavailable."""
    try:
        from google.auth import default, exceptions
        from google.auth.transport.requests import Request
    except ImportError:
        raise UsageError(NEEDS_GOOGLE_AUTH) from None
    try:
        credentials, project = default(scopes=list(SCOPES))
    except exceptions.DefaultCredentialsError as exc:
        raise UsageError(
            f"Vertex AI found no Application Default Credentials ({_short(exc)}): {_ADC_HELP}; "
            "or use an express-mode API key (providers.vertex.api_key_env)."
        ) from None
    return AdcTokenSource(credentials, Request(), exceptions, project=project or None)


def _setting(
    options: Mapping[str, Any], key: str, pattern: re.Pattern[str], at: str
) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not pattern.fullmatch(text):
        raise UsageError(f"{at}.{key}: {text!r} is not a valid Google Cloud {key}")
    return text


def _host_for(location: str) -> str:
    if location == "global":
        return DEFAULT_HOST
    if location in _MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def _is_async(source: object) -> bool:
    call = type(source).__call__ if callable(source) else None
    return inspect.iscoroutinefunction(source) or inspect.iscoroutinefunction(call)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
