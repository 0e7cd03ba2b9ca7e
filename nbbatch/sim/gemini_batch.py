"""The Gemini Batch API and Files API in the simulator, as the REST API and google-genai see
them: `models/{m}:batchGenerateContent` (inline requests or a file), `batches/{id}` (get,
`:cancel`, delete), `batches` (list), the resumable upload at `/upload/v1beta/files`, and
responses files at `/download/v1beta/files/{id}:download` and `/v1beta/files/{id}:download`.

Jobs are Operations: `metadata` (`@type …GenerateContentBatch`, `BATCH_STATE_*`, int64
counts as strings, zero counts left out), then `done` and `response` once finished. Each
request is parsed and decided like a generateContent call (sim/gemini.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from nbbatch.catalog import MODELS
from nbbatch.sim import gemini
from nbbatch.sim.batch_jobs import BatchStore, SimJob, SimRequest, answer, new_id
from nbbatch.sim.core import Decision, Reject, SimResponse, SimulatorCore, json_response

API = "gemini-batch"
_V = "/v1beta/"
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."
_STATES = {"pending": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED",
           "failed": "FAILED", "expired": "EXPIRED", "cancelled": "CANCELLED"}


def route(core: SimulatorCore, method: str, path: str, query: Mapping[str, list[str]],
          headers: Mapping[str, str], body: bytes) -> SimResponse | None:
    if path.startswith("/upload/v1beta/files"):
        if query.get("upload_id"):  # the upload URL itself is the credential, as in the API
            return _upload(core, query, headers, body)
        return _guarded(core, headers, query, lambda: _upload(core, query, headers, body))
    for prefix in ("/download/v1beta/files/", "/v1beta/files/"):
        if path.startswith(prefix) and path.endswith(":download") and method == "GET":
            name = "files/" + path[len(prefix):-len(":download")]
            return _guarded(core, headers, query, lambda n=name: _download(core, n))
    if path.startswith("/v1beta/files/") and method == "GET":
        return _guarded(core, headers, query, lambda: _file(core, path[len(_V):]))
    if path.startswith("/v1beta/models/") and path.endswith(":batchGenerateContent"):
        if method != "POST":
            return None
        model = path[len("/v1beta/models/"):-len(":batchGenerateContent")]
        return _guarded(core, headers, query, lambda: _create(core, model, body))
    if path == "/v1beta/batches" and method == "GET":
        return _guarded(core, headers, query, lambda: _list(core, query))
    if path.startswith("/v1beta/batches/"):
        name, _, verb = path[len(_V):].partition(":")
        return _guarded(core, headers, query, lambda: _job_route(core, method, name, verb))
    return None


def _guarded(core: SimulatorCore, headers: Mapping[str, str], query: Mapping[str, list[str]],
             answer: Any) -> SimResponse:
    try:
        gemini.check_key(core.options, headers.get("x-goog-api-key")
                         or (query.get("key") or [""])[0])
        response: SimResponse = answer()
        return response
    except Reject as r:
        return r.response


def _store(core: SimulatorCore) -> BatchStore:
    return BatchStore.of(core, API)


def _not_found(what: str) -> SimResponse:
    return gemini.error(404, "NOT_FOUND", f"Requested entity was not found: {what}.")


# -- files --------------------------------------------------------------------------------


def _upload(core: SimulatorCore, query: Mapping[str, list[str]], headers: Mapping[str, str],
            body: bytes) -> SimResponse:
    """The resumable protocol: `start` gives an upload URL; `upload` chunks follow at their
    offsets; `finalize` makes the file."""
    store = _store(core)
    command = headers.get("x-goog-upload-command", "")
    if "start" in command:
        upload_id = new_id(12)
        try:
            meta = gemini._object(json.loads(body or b"{}"), "", None).get("file") or {}
        except (ValueError, Reject):
            meta = {}
        with store.lock:
            store.uploads[upload_id] = {"data": bytearray(), "meta": meta,
                                        "mime": headers.get("x-goog-upload-header-content-type")}
        host = headers.get("host") or "127.0.0.1"
        return SimResponse(200, {"X-Goog-Upload-URL": f"http://{host}/upload/v1beta/files?"
                                 f"upload_id={upload_id}", "X-Goog-Upload-Status": "active"})
    upload_id = (query.get("upload_id") or [""])[0]
    with store.lock:
        upload = store.uploads.get(upload_id)
        if upload is None:
            return gemini.error(404, "NOT_FOUND", "No such upload.")
        offset = int(headers.get("x-goog-upload-offset") or 0)
        if offset != len(upload["data"]):
            return gemini.error(400, "INVALID_ARGUMENT", "Upload offset does not match.")
        upload["data"] += body
        if "finalize" not in command:
            return SimResponse(200, {"X-Goog-Upload-Status": "active"})
        del store.uploads[upload_id]
        name = f"files/{new_id(6)}"
        now = _time()
        doc = {"name": name, "displayName": upload["meta"].get("display_name")
               or upload["meta"].get("displayName") or name,
               "mimeType": upload["mime"] or "application/octet-stream",
               "sizeBytes": str(len(upload["data"])), "createTime": now, "updateTime": now,
               "state": "ACTIVE", "source": "UPLOADED"}
        store.files[name] = {**doc, "content": bytes(upload["data"])}
    response = json_response(200, {"file": doc})
    response.headers["X-Goog-Upload-Status"] = "final"
    return response


def _file(core: SimulatorCore, name: str) -> SimResponse:
    with _store(core).lock:
        found = _store(core).files.get(name)
    if found is None:
        return _not_found(name)
    return json_response(200, {k: v for k, v in found.items() if k != "content"})


def _download(core: SimulatorCore, name: str) -> SimResponse:
    store = _store(core)
    with store.lock:
        found = store.files.get(name)
    if found is not None:
        return SimResponse(200, {"Content-Type": "application/octet-stream"}, found["content"])
    job = store.job("batches/" + name.removeprefix("files/batch-"))
    if job is None or job.inline or not _finished(core, job):
        return _not_found(name)
    return SimResponse(200, {"Content-Type": "application/jsonl"},
                       stream=_lines(core, job))


# -- jobs ---------------------------------------------------------------------------------


def _create(core: SimulatorCore, model: str, body: bytes) -> SimResponse:
    info = MODELS.get(model.removeprefix("models/"))
    if info is None or info.family != "gemini":
        return gemini.error(404, "NOT_FOUND", f"models/{model} is not found for API version "
                            "v1beta, or is not supported for batchGenerateContent.")
    if core.take_count("batch_create_503"):
        return gemini.error(503, "UNAVAILABLE", "The service is currently unavailable.")
    try:
        doc = json.loads(body)
        batch = gemini._object(doc, "", None).get("batch")
        batch = gemini._object(batch, "batch", None)
        config = gemini._get(batch, "inputconfig")
        config = gemini._object(config, "batch.input_config", None)
    except ValueError:
        return gemini.error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    except Reject as r:
        return r.response
    display = gemini._get(batch, "displayname")
    if not isinstance(display, str) or not display:
        return gemini.error(400, "INVALID_ARGUMENT", "* batch.display_name: required")
    name = f"batches/{new_id(16)}"
    file_name = gemini._get(config, "filename")
    if isinstance(file_name, str):
        with _store(core).lock:
            found = _store(core).files.get(file_name)
        if found is None:
            return gemini.error(400, "INVALID_ARGUMENT", f"File {file_name} not found.")
        entries = []
        for line in found["content"].splitlines():
            if line.strip():
                entry = json.loads(line)
                entries.append((str(entry.get("key", "")), entry.get("request")))
    else:
        inline = gemini._get(gemini._object(gemini._get(config, "requests"), "requests", None),
                             "requests") or []
        entries = [(str(gemini._get(e.get("metadata") or {}, "key") or ""), e.get("request"))
                   for e in inline if isinstance(e, dict)]
    requests = [_request(core, info, name, key, raw) for key, raw in entries]
    opts = core.options
    job = SimJob(name=name, provider="gemini", display_name=display, model=info.id,
                 created=core.now, duration=opts.batch_duration, outcome=opts.batch_outcome,
                 requests=requests, inline=not isinstance(file_name, str),
                 input_file=file_name if isinstance(file_name, str) else None)
    _store(core).add(job)
    response = json_response(200, _operation(core, job), delay=opts.latency[1])
    if core.take_count("batch_lose_create"):
        response.drop = True  # made, but the answer never arrives
    return response


def _request(core: SimulatorCore, info: Any, job: str, key: str, raw: Any) -> SimRequest:
    raw = {k: v for k, v in raw.items() if k != "model"} if isinstance(raw, dict) else raw
    try:
        parsed = gemini.parse_request(raw)
        parsed.info = info
        gemini.validate(parsed, info)
    except Reject as r:
        core.log({"t": round(core.now, 3), "provider": "gemini", "model": info.id,
                  "prompt": None, "batch": job, "status": r.response.status,
                  "outcome": r.outcome})
        return SimRequest(key, "", None, refusal=r.response)
    decision = core.batch_request("gemini", info.id, parsed, job, parsed.references)

    def draw(d: Decision) -> tuple[SimResponse, str]:
        return gemini.render(d, core.options, parsed)

    return SimRequest(key, parsed.prompt, decision, render=draw)


def _job_route(core: SimulatorCore, method: str, name: str, verb: str) -> SimResponse:
    job = _store(core).job(name)
    if job is None:
        return _not_found(name)
    if verb == "cancel" and method == "POST":
        if not _finished(core, job):
            job.cancelled = core.now
        return json_response(200, {})
    if not verb and method == "DELETE":
        with _store(core).lock:
            _store(core).jobs.pop(name, None)
        return json_response(200, {})
    if not verb and method == "GET":
        return json_response(200, _operation(core, job, with_results=True))
    return gemini.error(400, "INVALID_ARGUMENT", f"Unsupported {method} on {name}.")


def _list(core: SimulatorCore, query: Mapping[str, list[str]]) -> SimResponse:
    jobs = _store(core).listing()
    size = max(1, min(int((query.get("pageSize") or ["50"])[0] or 50), 1000))
    start = int((query.get("pageToken") or ["0"])[0] or 0)
    page = jobs[start:start + size]
    doc: dict[str, Any] = {"operations": [_operation(core, job) for job in page]}
    if start + size < len(jobs):
        doc["nextPageToken"] = str(start + size)
    return json_response(200, doc)


def _finished(core: SimulatorCore, job: SimJob) -> bool:
    return job.phase(core.now) not in ("pending", "running")


def _operation(core: SimulatorCore, job: SimJob, with_results: bool = False) -> dict[str, Any]:
    now = core.now
    phase = job.phase(now)
    finished = job.finished_by(now)
    ok = sum(1 for r in job.requests[:finished] if _succeeds(r))
    stats = {"requestCount": str(len(job.requests))}
    for field, n in (("successfulRequestCount", ok), ("failedRequestCount", finished - ok),
                     ("pendingRequestCount", len(job.requests) - finished)):
        if n:
            stats[field] = str(n)  # int64 as a string; zero counts are left out
    created = _time(time.time() - (now - job.created))
    meta: dict[str, Any] = {
        "@type": _TYPE + "GenerateContentBatch", "model": f"models/{job.model}",
        "displayName": job.display_name, "createTime": created, "updateTime": _time(),
        "batchStats": stats, "state": f"BATCH_STATE_{_STATES[phase]}", "name": job.name,
        "inputConfig": ({"fileName": job.input_file} if job.input_file else
                        {"requests": {}}),
    }
    doc: dict[str, Any] = {"name": job.name, "metadata": meta}
    if phase in ("pending", "running"):
        return doc
    meta["endTime"] = _time()
    doc["done"] = True
    if phase == "failed":
        doc["error"] = {"code": 13, "message": "The batch job failed (simulated)."}
        return doc
    output: dict[str, Any]
    if job.inline:
        if not with_results:  # the list API does not return inlined responses
            return doc
        responses = [_inline_entry(r) for r in job.requests[:finished]]
        output = {"inlinedResponses": {"inlinedResponses": responses}}
    else:
        output = {"responsesFile": f"files/batch-{job.name.removeprefix('batches/')}"}
    meta["output"] = output
    doc["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
    return doc


def _succeeds(request: SimRequest) -> bool:
    return request.decision is not None and request.decision.outcome == "success"


def _inline_entry(request: SimRequest) -> dict[str, Any]:
    response, _ = answer(request)
    doc = json.loads(response.body)
    entry = {"error": doc["error"]} if response.status != 200 else {"response": doc}
    return {**entry, "metadata": {"key": request.key}}


def _lines(core: SimulatorCore, job: SimJob) -> Iterator[bytes]:
    """The responses file, one request's line at a time, drawn as it is sent."""
    for request in job.requests[:job.finished_by(core.now)]:
        response, _ = answer(request)
        key = json.dumps(request.key).encode()
        if response.status == 200:
            yield b'{"key":' + key + b',"response":' + response.body + b"}\n"
        else:
            error = json.dumps(json.loads(response.body)["error"]).encode()
            yield b'{"key":' + key + b',"error":' + error + b"}\n"


def _time(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
