"""The OpenAI Files and Batch APIs in the simulator, as the REST API and the openai SDK see
them: `POST /v1/files` (multipart, purpose `batch`), `GET /v1/files/{id}` and
`/v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches`
(cursor pages), `POST /v1/batches/{id}/cancel`.

Each JSONL line of the input file is an images/generations request, checked and decided
like an online one (sim/openai.py). Finished requests go to the output file (HTTP 200) or
the error file (their own status and error body), in an order unlike the input's; requests
an expired or cancelled job never ran get `batch_expired` / `batch_cancelled` error lines.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from nbbatch.catalog import MODELS
from nbbatch.sim import openai
from nbbatch.sim.batch_jobs import BatchStore, SimJob, SimRequest, answer, new_id
from nbbatch.sim.core import Decision, Reject, SimResponse, SimulatorCore, json_response
from nbbatch.sim.openai_requests import error, parse_form, validate

API = "openai-batch"
ENDPOINT = "/v1/images/generations"
_STATUS = {"pending": "validating", "running": "in_progress", "succeeded": "completed",
           "failed": "failed", "expired": "expired", "cancelled": "cancelled"}
_NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the "
                        "completion window expired."),
            "cancelled": ("batch_cancelled", "This request was not executed because the batch "
                          "was cancelled.")}


def route(core: SimulatorCore, method: str, path: str, query: Mapping[str, list[str]],
          headers: Mapping[str, str], body: bytes) -> SimResponse | None:
    if not path.startswith(("/v1/files", "/v1/batches")):
        return None
    try:
        openai.check_key(core.options, headers.get("authorization", ""))
        response = _answer(core, method, path, query, headers, body)
    except Reject as r:
        response = r.response
    response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
    return response


def _answer(core: SimulatorCore, method: str, path: str, query: Mapping[str, list[str]],
            headers: Mapping[str, str], body: bytes) -> SimResponse:
    parts = path.strip("/").split("/")[1:]  # after "v1"
    if parts == ["files"] and method == "POST":
        return _upload(core, headers, body)
    if parts[:1] == ["files"] and len(parts) in (2, 3) and method == "GET":
        return _file(core, parts[1], content=parts[2:] == ["content"])
    if parts == ["batches"] and method == "POST":
        return _create(core, headers, body)
    if parts == ["batches"] and method == "GET":
        return _list(core, query)
    if parts[:1] == ["batches"] and len(parts) == 2 and method == "GET":
        job = _store(core).job(parts[1])
        return json_response(200, _batch(core, job)) if job else _missing(parts[1])
    if parts[:1] == ["batches"] and parts[2:] == ["cancel"] and method == "POST":
        job = _store(core).job(parts[1])
        if job is None:
            return _missing(parts[1])
        if job.phase(core.now) in ("pending", "running"):
            job.cancelled = core.now
        return json_response(200, _batch(core, job))
    return error(404, f"Invalid URL ({method} {path})")


def _store(core: SimulatorCore) -> BatchStore:
    return BatchStore.of(core, API)


def _missing(name: str) -> SimResponse:
    return error(404, f"No such object: '{name}'", code="not_found")


def _upload(core: SimulatorCore, headers: Mapping[str, str], body: bytes) -> SimResponse:
    fields, files = parse_form(headers.get("content-type", ""), body, ("file",))
    if fields.get("purpose") != "batch" or len(files) != 1:
        return error(400, "Upload one `file` with purpose 'batch'.", param="purpose")
    file_id = f"file-{new_id(12)}"
    doc = {"id": file_id, "object": "file", "bytes": len(files[0].data),
           "created_at": int(time.time()), "filename": "batch.jsonl", "purpose": "batch",
           "status": "processed"}
    with _store(core).lock:
        _store(core).files[file_id] = {**doc, "content": files[0].data}
    return json_response(200, doc)


def _file(core: SimulatorCore, file_id: str, *, content: bool) -> SimResponse:
    store = _store(core)
    with store.lock:
        found = store.files.get(file_id)
    if found is not None:
        if content:
            return SimResponse(200, {"Content-Type": "application/octet-stream"},
                               found["content"])
        return json_response(200, {k: v for k, v in found.items() if k != "content"})
    kind, _, batch_id = file_id.removeprefix("file-").partition("-")
    job = store.job(batch_id)
    if job is None or kind not in ("out", "err") or file_id not in _result_files(core, job):
        return _missing(file_id)
    if not content:
        return json_response(200, {"id": file_id, "object": "file", "purpose": "batch_output",
                                   "filename": f"batch_{kind}.jsonl", "bytes": 0,
                                   "created_at": int(time.time()), "status": "processed"})
    return SimResponse(200, {"Content-Type": "application/octet-stream"},
                       stream=_lines(core, job, errors=kind == "err"))


def _create(core: SimulatorCore, headers: Mapping[str, str], body: bytes) -> SimResponse:
    try:
        doc = json.loads(body)
    except ValueError:
        return error(400, "We could not parse the JSON body of your request.")
    if core.take_count("batch_create_503"):
        return error(503, "The server is overloaded or not ready yet.",
                     "service_unavailable_error", "server_is_overloaded")
    if doc.get("endpoint") != ENDPOINT:
        return error(400, f"This simulator takes batches for {ENDPOINT} only.", param="endpoint")
    if doc.get("completion_window") != "24h":
        return error(400, "completion_window must be '24h'.", param="completion_window")
    with _store(core).lock:
        found = _store(core).files.get(str(doc.get("input_file_id")))
    if found is None:
        return error(400, f"Invalid input_file_id {doc.get('input_file_id')!r}.",
                     param="input_file_id")
    job_id = f"batch_{new_id(12)}"
    host = headers.get("host") or "127.0.0.1"
    requests = [_request(core, host, job_id, line)
                for line in found["content"].splitlines() if line.strip()]
    opts = core.options
    job = SimJob(name=job_id, provider="openai", display_name="", model="", created=core.now,
                 duration=opts.batch_duration, outcome=opts.batch_outcome, requests=requests,
                 metadata=doc.get("metadata") or {}, input_file=found["id"])
    _store(core).add(job)
    response = json_response(200, _batch(core, job), delay=opts.latency[1])
    if core.take_count("batch_lose_create"):
        response.drop = True
    return response


def _request(core: SimulatorCore, host: str, job: str, line: bytes) -> SimRequest:
    entry = json.loads(line)
    key = str(entry.get("custom_id", ""))
    fields: dict[str, Any] = entry["body"] if isinstance(entry.get("body"), dict) else {}
    model = str(fields.get("model") or "dall-e-2")
    info = MODELS.get(model)
    try:
        if info is None or info.family != "openai":
            raise Reject(error(404, f"The model `{model}` does not exist or you do not have "
                                    "access to it.", code="model_not_found"), "not_found")
        request = validate("generations", model, fields, [])
    except Reject as r:
        core.log({"t": round(core.now, 3), "provider": "openai", "model": model,
                  "prompt": fields.get("prompt"), "batch": job, "status": r.response.status,
                  "outcome": r.outcome})
        return SimRequest(key, str(fields.get("prompt") or ""), None, refusal=r.response)
    decision = core.batch_request("openai", model, request, job)

    def draw(d: Decision) -> tuple[SimResponse, str]:
        return openai.render(core, host, d, core.options, request)

    return SimRequest(key, request.prompt, decision, render=draw)


def _list(core: SimulatorCore, query: Mapping[str, list[str]]) -> SimResponse:
    jobs = _store(core).listing()
    limit = max(1, min(int((query.get("limit") or ["20"])[0] or 20), 100))
    after = (query.get("after") or [""])[0]
    if after:
        names = [job.name for job in jobs]
        jobs = jobs[names.index(after) + 1:] if after in names else []
    page = jobs[:limit]
    data = [_batch(core, job) for job in page]
    return json_response(200, {"object": "list", "data": data,
                               "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None,
                               "has_more": len(jobs) > limit})


def _result_files(core: SimulatorCore, job: SimJob) -> list[str]:
    """The output and error files a finished job has (either is absent when empty)."""
    phase = job.phase(core.now)
    if phase in ("pending", "running", "failed"):
        return []
    done = job.finished_by(core.now)
    ok = sum(1 for r in job.requests[:done] if _succeeds(r))
    files = []
    if ok:
        files.append(f"file-out-{job.name}")
    if ok < len(job.requests):
        files.append(f"file-err-{job.name}")
    return files


def _succeeds(request: SimRequest) -> bool:
    return request.decision is not None and request.decision.outcome == "success"


def _batch(core: SimulatorCore, job: SimJob) -> dict[str, Any]:
    now = core.now
    phase = job.phase(now)
    done = job.finished_by(now)
    ok = sum(1 for r in job.requests[:done] if _succeeds(r))
    created = int(time.time() - (now - job.created))
    files = _result_files(core, job)
    finished = phase not in ("pending", "running")
    stamp = int(time.time()) if finished else None
    return {
        "id": job.name, "object": "batch", "endpoint": ENDPOINT,
        "errors": {"object": "list", "data": [{"code": "simulated_failure", "message":
                   "The batch failed (simulated).", "line": None, "param": None}]}
        if phase == "failed" else None,
        "input_file_id": job.input_file, "completion_window": "24h",
        "status": _STATUS[phase],
        "output_file_id": next((f for f in files if f.startswith("file-out-")), None),
        "error_file_id": next((f for f in files if f.startswith("file-err-")), None),
        "created_at": created, "in_progress_at": created if phase != "pending" else None,
        "expires_at": created + 86400, "finalizing_at": stamp, "completed_at":
        stamp if phase == "succeeded" else None, "failed_at": stamp if phase == "failed" else None,
        "expired_at": stamp if phase == "expired" else None,
        "cancelled_at": stamp if phase == "cancelled" else None,
        "request_counts": {"total": len(job.requests), "completed": ok, "failed": done - ok},
        "metadata": job.metadata,
    }


def _lines(core: SimulatorCore, job: SimJob, *, errors: bool) -> Iterator[bytes]:
    """The output (or error) file, a line at a time: last request first, since OpenAI does
    not keep the input's order."""
    phase = job.phase(core.now)
    done = job.finished_by(core.now)
    for n in reversed(range(len(job.requests))):
        request = job.requests[n]
        line: dict[str, Any] = {"id": f"batch_req_{new_id(12)}", "custom_id": request.key}
        if n >= done:
            if not errors:
                continue
            code, message = _NOT_RUN.get(phase, _NOT_RUN["expired"])
            line.update(response=None, error={"code": code, "message": message})
        else:
            response, _ = answer(request)
            if (response.status == 200) == errors:
                continue
            body = b"%s" % response.body
            head = json.dumps({**line, "response": {
                "status_code": response.status,
                "request_id": response.headers.get("x-request-id", f"req_{new_id(12)}"),
                "body": None}, "error": None}).encode()
            yield head.replace(b'"body": null', b'"body": ' + body, 1) + b"\n"
            continue
        yield json.dumps(line).encode() + b"\n"
