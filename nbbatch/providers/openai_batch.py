"""The OpenAI Batch API over raw httpx: `/v1/images/generations` requests at half the price.

The requests go up as a JSONL file (`POST /files`, purpose `batch`); the job is created with
`POST /batches` (endpoint `/v1/images/generations`, window 24h, our display name in
`metadata` so the job list can be searched for it); polled with `GET /batches/{id}`; its
output and error files are streamed from `GET /files/{id}/content` and matched by
`custom_id` (their order is not guaranteed). Each answer is classified by
openai_answers.classify_document, as online. Reference images (multipart edits) have no
documented JSONL form: the manifest refuses them in batch mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import Any

import httpx

from nbbatch.errors import JobGoneError, OptionError, ProviderError, TransientError, UsageError
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import (
    BatchItem,
    BatchResult,
    BatchStatus,
    ImageLink,
    JobPhase,
)
from nbbatch.providers.batch_api import (
    LIST_PAGES,
    SMALL_ANSWER_BYTES,
    TRANSFER_TIMEOUT,
    BatchApiClient,
)
from nbbatch.providers.batch_lines import checked_name, count, parse_line, write_jsonl
from nbbatch.providers.openai import DEFAULT_BASE_URL, MAX_RESPONSE_BYTES
from nbbatch.providers.openai_answers import DEFAULT_KEY_ENV, classify_document
from nbbatch.providers.openai_requests import build_generation_body, settle_options
from nbbatch.providers.transfer import get_lines
from nbbatch.providers.wire import (
    RawResponse,
    as_dict,
    as_text,
    parse_object,
    post_multipart,
)

ENDPOINT = "/v1/images/generations"
METADATA_KEY = "nbbatch_job"  # our display name, in the job's metadata
_PHASES = {
    "validating": JobPhase.PENDING, "in_progress": JobPhase.RUNNING,
    "finalizing": JobPhase.RUNNING, "cancelling": JobPhase.RUNNING,
    "completed": JobPhase.SUCCEEDED, "failed": JobPhase.FAILED,
    "expired": JobPhase.EXPIRED, "cancelled": JobPhase.CANCELLED,
}


def create_batch(config: ProviderConfig, api_key: str | None,
                 transport: httpx.AsyncBaseTransport | None) -> OpenAIBatchClient:
    assert api_key is not None
    return OpenAIBatchClient(config, api_key, transport=transport)


def parse_job(doc: dict[str, Any]) -> BatchStatus:
    name = checked_name(doc.get("id"), "", "batch")
    state = as_text(doc.get("status")) or "validating"
    counts = as_dict(doc.get("request_counts"))
    errors = as_dict(doc.get("errors")).get("data")
    first = as_dict(errors[0]) if isinstance(errors, list) and errors else {}
    files = tuple(checked_name(f, "", "file") for f in
                  (doc.get("output_file_id"), doc.get("error_file_id")) if f)
    return BatchStatus(
        name=name, display_name=as_text(as_dict(doc.get("metadata")).get(METADATA_KEY)),
        state=state, phase=_PHASES.get(state, JobPhase.PENDING), total=count(counts.get("total")),
        succeeded=count(counts.get("completed")), failed=count(counts.get("failed")),
        error=as_text(first.get("message")), results=files,
    )


class OpenAIBatchClient(BatchApiClient):
    parse_job = staticmethod(parse_job)

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        try:
            self.options = settle_options(config.options)
        except OptionError as exc:
            raise UsageError(f"providers.{config.name}.{exc}") from None
        headers = {"Authorization": f"Bearer {api_key}"}
        for option, header in (("organization", "OpenAI-Organization"),
                               ("project", "OpenAI-Project")):
            if option in self.options:
                headers[header] = self.options[option]
        super().__init__(config, api_key, base_url=config.base_url or DEFAULT_BASE_URL,
                         headers=headers, key_env=config.api_key_env or DEFAULT_KEY_ENV,
                         transport=transport)

    async def prepare(self, display_name: str, model: str,
                      items: Iterable[BatchItem]) -> str | None:
        lines = ({"custom_id": item.key, "method": "POST", "url": ENDPOINT,
                  "body": build_generation_body(item.request, self.options)} for item in items)
        file, _ = write_jsonl(lines)
        with file:
            file.seek(0)
            raw = await post_multipart(
                self._client, f"{self._base}/files", data={"purpose": "batch"},
                files=[("file", (f"{display_name}.jsonl", file, "application/jsonl"))],
                headers=self._headers, timeout=max(TRANSFER_TIMEOUT, self.config.timeout),
                max_bytes=1 << 20, provider=self.name, redact=self._redact)
        return self._name(self._check(raw).get("id"), "", "file")

    async def create(self, display_name: str, model: str, items: Iterable[BatchItem],
                     input_file: str | None) -> BatchStatus:
        assert input_file is not None, "prepare() always uploads the requests"
        body = {"input_file_id": input_file, "endpoint": ENDPOINT, "completion_window": "24h",
                "metadata": {METADATA_KEY: display_name}}
        raw = await self._post(f"{self._base}/batches", body)
        return self._job(self._check(raw, model=model))

    async def get(self, name: str) -> BatchStatus:
        raw = await self._get(f"{self._base}/batches/{name}", SMALL_ANSWER_BYTES)
        if raw.status == 404:
            raise JobGoneError(f"OpenAI no longer knows batch {name}", provider=self.name,
                               status=404)
        return self._job(self._check(raw))

    async def find(self, display_name: str) -> BatchStatus | None:
        after = ""
        for _ in range(LIST_PAGES):
            query = "limit=100" + (f"&after={after}" if after else "")
            raw = await self._get(f"{self._base}/batches?{query}", 16 << 20)
            doc = self._check(raw)
            data = doc.get("data")
            jobs = [as_dict(d) for d in data] if isinstance(data, list) else []
            for job in jobs:
                if as_dict(job.get("metadata")).get(METADATA_KEY) == display_name:
                    return self._job(job)
            if not jobs or doc.get("has_more") is not True:
                return None
            after = self._name(jobs[-1].get("id"), "", "batch")
        return None

    async def cancel(self, name: str) -> None:
        await self._cancel_at(f"{self._base}/batches/{name}/cancel")

    async def results(self, status: BatchStatus) -> AsyncIterator[BatchResult]:
        for file_id in status.results or ():
            lines = get_lines(self._client, f"{self._base}/files/{file_id}/content",
                              headers=self._headers, timeout=self.config.timeout,
                              max_line_bytes=MAX_RESPONSE_BYTES, provider=self.name,
                              redact=self._redact, on_error=self._error)
            async with aclosing(lines) as stream:
                async for line in stream:
                    doc = parse_line(line)
                    key = as_text(as_dict(doc).get("custom_id"))
                    if doc is not None and key is not None:
                        yield key, self._answer(doc)

    # -- answers -----------------------------------------------------------------------

    def _answer(self, line: dict[str, Any]) -> Any:
        response = as_dict(line.get("response"))
        error = as_dict(line.get("error"))
        model = as_text(as_dict(response.get("body")).get("model")) or ""
        if not response:  # an expired or cancelled request: it never ran
            message = as_text(error.get("message")) or as_text(error.get("code")) or "no answer"
            return TransientError(self._redact.message(f"not run: {message}"),
                                  provider=self.name)
        status = response.get("status_code")
        status = status if isinstance(status, int) else 500
        body = response.get("body")
        headers = {"x-request-id": as_text(response.get("request_id")) or ""}
        try:
            result = classify_document(status, headers, body if isinstance(body, dict) else None,
                                       provider=self.name, redact=self._redact, model=model,
                                       key_env=self._key_env)
        except ProviderError as exc:
            return exc
        if isinstance(result, ImageLink):
            return TransientError("a batch answer gave an image URL, not the image",
                                  provider=self.name)
        return result

    def _classify(self, raw: RawResponse, model: str) -> None:
        classify_document(raw.status, raw.headers, parse_object(raw.body), raw.body,
                          provider=self.name, redact=self._redact, model=model,
                          key_env=self._key_env)
