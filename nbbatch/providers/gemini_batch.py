"""The Gemini Batch API over raw httpx: jobs of generateContent requests at half the price.

- create: `POST /v1beta/models/{model}:batchGenerateContent` with the requests inline
  (`metadata.key` on each), or with a JSONL file uploaded through the resumable Files API
  when the inline body would pass its limit - or when the images coming back inline would
  be too large to read as one document (inline results arrive inside the job resource).
- poll: `GET /v1beta/batches/{id}`; states may read `BATCH_STATE_*` (REST) or `JOB_STATE_*`
  (as the SDK shows them); counts are int64 serialized as strings, and zero counts are left
  out. list: `GET /v1beta/batches`, to find a job by its display name. cancel: `:cancel`.
- results: inline (`inlinedResponses`, in request order, keyed when `metadata` is present)
  or a responses file streamed line by line from `/download/v1beta/{file}:download`.
Every answer inside a job is classified by google.classify_document, as online.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from nbbatch.errors import JobGoneError, ProviderError, TransientError
from nbbatch.model import ProviderConfig
from nbbatch.providers import google
from nbbatch.providers.base import BatchItem, BatchResult, BatchStatus, JobPhase
from nbbatch.providers.batch_api import LIST_PAGES, TRANSFER_TIMEOUT, BatchApiClient
from nbbatch.providers.batch_lines import (
    checked_name,
    count,
    encoded_size,
    parse_line,
    write_jsonl,
)
from nbbatch.providers.gemini import DEFAULT_BASE_URL, MAX_RESPONSE_BYTES
from nbbatch.providers.transfer import file_chunks, get_lines, send_bytes
from nbbatch.providers.wire import (
    RawResponse,
    as_dict,
    as_text,
    get,
    post_json,
)

INLINE_MAX_BYTES = 20 * 1024 * 1024  # the API's limit for a create body with inline requests
# Inline results come back inside the job resource, which must be read whole: keep it small.
INLINE_RESULTS_BUDGET = 64 * 1024 * 1024
_RESULT_BYTES = {"512": 1 << 20, "1K": 2 << 20, "2K": 6 << 20, "4K": 24 << 20}  # base64, roughly
MAX_JOB_BYTES = INLINE_RESULTS_BUDGET * 4  # a job resource with its inline results
_PHASES = {
    "PENDING": JobPhase.PENDING, "QUEUED": JobPhase.PENDING, "UNSPECIFIED": JobPhase.PENDING,
    "RUNNING": JobPhase.RUNNING, "CANCELLING": JobPhase.RUNNING, "PAUSED": JobPhase.RUNNING,
    "UPDATING": JobPhase.RUNNING, "SUCCEEDED": JobPhase.SUCCEEDED,
    "PARTIALLY_SUCCEEDED": JobPhase.SUCCEEDED, "FAILED": JobPhase.FAILED,
    "CANCELLED": JobPhase.CANCELLED, "EXPIRED": JobPhase.EXPIRED,
}


def create_batch(config: ProviderConfig, api_key: str | None,
                 transport: httpx.AsyncBaseTransport | None) -> GeminiBatchClient:
    assert api_key is not None
    return GeminiBatchClient(config, api_key, transport=transport)


def phase_of(state: str) -> JobPhase:
    """BATCH_STATE_RUNNING, JOB_STATE_RUNNING or RUNNING -> JobPhase.RUNNING; anything
    unknown counts as still pending (the job is kept and polled)."""
    return _PHASES.get(state.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_"),
                       JobPhase.PENDING)


def parse_job(doc: dict[str, Any]) -> BatchStatus:
    """A batch resource (an Operation with `metadata`, or the batch itself) as a status."""
    meta = as_dict(doc.get("metadata"))
    if not get(meta, "state") and get(doc, "state"):
        meta = doc
    name = checked_name(as_text(doc.get("name")) or as_text(meta.get("name")), "batches/", "job")
    state = as_text(get(meta, "state")) or "BATCH_STATE_UNSPECIFIED"
    stats = as_dict(get(meta, "batchStats", "batch_stats"))
    output = as_dict(get(meta, "output")) or as_dict(get(doc, "response"))
    inline = get(as_dict(get(output, "inlinedResponses", "inlined_responses")),
                 "inlinedResponses", "inlined_responses")
    responses_file = as_text(get(output, "responsesFile", "responses_file"))
    results: tuple[str, Any] | None = None
    if isinstance(inline, list):
        results = ("inline", inline)
    elif responses_file:
        results = ("file", checked_name(responses_file, "files/", "responses file"))
    error = as_dict(get(doc, "error")) or as_dict(get(meta, "error"))
    return BatchStatus(
        name=name, display_name=as_text(get(meta, "displayName", "display_name")), state=state,
        phase=phase_of(state), total=count(get(stats, "requestCount", "request_count")),
        succeeded=count(get(stats, "successfulRequestCount", "successful_request_count")),
        failed=count(get(stats, "failedRequestCount", "failed_request_count")),
        error=as_text(error.get("message")), results=results,
    )


class GeminiBatchClient(BatchApiClient):
    parse_job = staticmethod(parse_job)

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str | None = None) -> None:
        super().__init__(config, api_key, base_url=config.base_url or DEFAULT_BASE_URL,
                         headers={"x-goog-api-key": api_key},
                         key_env=config.api_key_env or "GEMINI_API_KEY (or GOOGLE_API_KEY)",
                         transport=transport, name=name)
        self._modalities = config.options.get("response_modalities") or google.MODALITIES

    # -- requests ----------------------------------------------------------------------

    def _line(self, item: BatchItem) -> dict[str, Any]:
        return {"key": item.key, "request": google.build_body(item.request, self._modalities)}

    def _inline(self, items: Iterable[BatchItem]) -> bool:
        size = results = 0
        for item in items:
            size += encoded_size(self._line(item)) + 64  # the inline wrapping, roughly
            results += _RESULT_BYTES.get(item.request.image_size or "1K", 2 << 20)
            if size > INLINE_MAX_BYTES or results > INLINE_RESULTS_BUDGET:
                return False
        return True

    async def prepare(self, display_name: str, model: str,
                      items: Iterable[BatchItem]) -> str | None:
        if self._inline(items):
            return None
        file, size = write_jsonl(self._line(item) for item in items)
        with file:
            start = await post_json(
                self._client, f"{self._base}/upload/v1beta/files",
                json={"file": {"display_name": display_name}},
                headers={**self._headers, "X-Goog-Upload-Protocol": "resumable",
                         "X-Goog-Upload-Command": "start",
                         "X-Goog-Upload-Header-Content-Length": str(size),
                         "X-Goog-Upload-Header-Content-Type": "application/jsonl"},
                timeout=self.config.timeout, max_bytes=1 << 20, provider=self.name,
                redact=self._redact)
            if not 200 <= start.status < 300:  # a started upload answers with its URL only
                raise self._error(start)
            upload_url = self._same_host(start.headers.get("x-goog-upload-url"))
            done = await send_bytes(
                self._client, "POST", upload_url, content=file_chunks(file),
                headers={**self._headers, "X-Goog-Upload-Command": "upload, finalize",
                         "X-Goog-Upload-Offset": "0", "Content-Length": str(size)},
                timeout=max(TRANSFER_TIMEOUT, self.config.timeout), max_bytes=1 << 20,
                provider=self.name, redact=self._redact)
        doc = self._check(done)
        name = get(as_dict(doc.get("file")), "name") or doc.get("name")
        return self._name(name, "files/", "file")

    async def create(self, display_name: str, model: str, items: Iterable[BatchItem],
                     input_file: str | None) -> BatchStatus:
        model_name = f"models/{model.removeprefix('models/')}"
        if input_file is not None:
            source: dict[str, Any] = {"fileName": input_file}
        else:
            source = {"requests": {"requests": [
                {"request": {"model": model_name,
                             **google.build_body(item.request, self._modalities)},
                 "metadata": {"key": item.key}} for item in items]}}
        url = f"{self._base}/v1beta/{quote(model_name, safe='/')}:batchGenerateContent"
        raw = await self._post(url, {"batch": {"displayName": display_name,
                                               "inputConfig": source}})
        return self._job(self._check(raw, model=model))

    # -- jobs --------------------------------------------------------------------------

    async def get(self, name: str) -> BatchStatus:
        raw = await self._get(f"{self._base}/v1beta/{name}", MAX_JOB_BYTES)
        if raw.status == 404:
            raise JobGoneError(f"the Gemini API no longer knows batch job {name}",
                               provider=self.name, status=404)
        return self._job(self._check(raw))

    async def find(self, display_name: str) -> BatchStatus | None:
        token = ""
        for _ in range(LIST_PAGES):
            query = "pageSize=100" + (f"&pageToken={quote(token, safe='')}" if token else "")
            raw = await self._get(f"{self._base}/v1beta/batches?{query}", MAX_JOB_BYTES)
            doc = self._check(raw)
            jobs = get(doc, "operations", "batches")
            for entry in jobs if isinstance(jobs, list) else []:
                meta = as_dict(as_dict(entry).get("metadata")) or as_dict(entry)
                if get(meta, "displayName", "display_name") == display_name:
                    return self._job(as_dict(entry))
            token = as_text(doc.get("nextPageToken")) or ""
            if not token:
                return None
        return None

    async def cancel(self, name: str) -> None:
        await self._cancel_at(f"{self._base}/v1beta/{name}:cancel")

    async def results(self, status: BatchStatus) -> AsyncIterator[BatchResult]:
        kind, where = status.results or ("none", None)
        if kind == "inline" and isinstance(where, list):
            for position, entry in enumerate(where):
                entry = as_dict(entry)
                key = as_text(get(as_dict(entry.get("metadata")), "key"))
                yield (key if key is not None else position), self._answer(entry)
        elif kind == "file":
            url = f"{self._base}/download/v1beta/{where}:download?alt=media"
            lines = get_lines(self._client, url, headers=self._headers,
                              timeout=self.config.timeout, max_line_bytes=MAX_RESPONSE_BYTES,
                              provider=self.name, redact=self._redact, on_error=self._error)
            async with aclosing(lines) as stream:
                async for line in stream:
                    doc = parse_line(line)
                    key = as_text(get(doc, "key"))
                    if doc is not None and key is not None:
                        yield key, self._answer(doc)

    # -- answers -----------------------------------------------------------------------

    def _answer(self, entry: dict[str, Any]) -> Any:
        """One request's answer: the image, or the ProviderError it means (not raised)."""
        error = get(entry, "error")
        try:
            if error is not None:
                code = as_dict(error).get("code")
                status = code if isinstance(code, int) and 400 <= code < 600 else 500
                google.classify_document(status, {}, {"error": error}, provider=self.name,
                                         redact=self._redact, key_env=self._key_env)
            response = get(entry, "response")
            return google.classify_document(200, {}, as_dict(response), provider=self.name,
                                            redact=self._redact, key_env=self._key_env)
        except ProviderError as exc:
            return exc

    def _classify(self, raw: RawResponse, model: str) -> None:
        google.classify(raw.status, raw.headers, raw.body, provider=self.name,
                        redact=self._redact, model=model, key_env=self._key_env)

    def _same_host(self, url: str | None) -> str:
        """The upload URL, sent to base_url's host whatever host it names: the key goes with
        it (as the official SDK does)."""
        if not url:
            raise TransientError("the Files API gave no upload URL", provider=self.name)
        base, target = urlsplit(self._base), urlsplit(url)
        return urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))
