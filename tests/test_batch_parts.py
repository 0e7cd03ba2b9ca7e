"""Batch mode's parts on their own: what the manifest refuses, the ledger's batch tables and
their migration, job resources read leniently, and results streamed line by line."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
import yaml

from nbbatch.errors import LedgerError, ManifestError, TransientError, UsageError
from nbbatch.manifest import load_manifest
from nbbatch.providers import gemini_batch, openai_batch
from nbbatch.providers.base import JobPhase
from nbbatch.providers.transfer import get_lines
from nbbatch.providers.wire import redactor
from nbbatch.settings import RunOptions, resolve
from nbbatch.store import migrations
from nbbatch.store.ledger import Ledger


def write(tmp_path, **doc):
    doc.setdefault("prompts", [{"id": "a", "prompt": "a fox"}])
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_batch_section_is_checked_like_the_others(tmp_path):
    manifest = load_manifest(write(tmp_path, mode="batch",
                                   batch={"poll_every": 0.2, "max_requests": 50}))
    assert (manifest.mode, manifest.batch.poll_every, manifest.batch.max_requests) == \
        ("batch", 0.2, 50)
    for batch, message in (({"poll_every": 0}, "batch.poll_every: must be > 0"),
                           ({"max_requests": 0}, "batch.max_requests: must be >= 1"),
                           ({"poll": 1}, "batch.poll: unknown key 'poll'")):
        with pytest.raises(ManifestError, match=message):
            load_manifest(write(tmp_path, batch=batch))
    with pytest.raises(ManifestError, match="mode: must be one of 'online' or 'batch'"):
        load_manifest(write(tmp_path, mode="offline"))


def test_what_a_batch_api_cannot_take_is_refused_before_anything_is_sent(tmp_path):
    with pytest.raises(ManifestError, match=r"provider 'vertex' has no batch mode: .*gemini"):
        load_manifest(write(tmp_path, mode="batch", defaults={"provider": "vertex"}))
    (tmp_path / "ref.png").write_bytes(_png())
    refs = [{"id": "a", "prompt": "edit this", "images": ["ref.png"]}]
    with pytest.raises(ManifestError, match="reference images cannot go in a openai batch"):
        load_manifest(write(tmp_path, mode="batch", prompts=refs,
                            defaults={"provider": "openai", "model": "gpt-image-1"}))
    # The same manifest online is fine, and --mode batch is checked the same way.
    path = write(tmp_path, prompts=refs, defaults={"provider": "openai", "model": "gpt-image-1"})
    load_manifest(path)
    with pytest.raises(ManifestError, match="reference images"):
        resolve(path, RunOptions(mode="batch"), cwd=tmp_path)
    with pytest.raises(UsageError, match="--mode must be online or batch"):
        resolve(path, RunOptions(mode="later"), cwd=tmp_path)


def test_resume_replays_mode_and_no_wait():
    options = RunOptions(mode="batch", no_wait=True)
    assert RunOptions.from_record(options.to_record()) == options


def _png() -> bytes:
    from nbbatch.sim.images import draw_image
    return draw_image("ref", aspect_ratio="1:1", mime_type="image/png", scale=16)


def test_a_ledger_from_before_batch_mode_is_migrated_and_keeps_its_images(tmp_path,
                                                                           monkeypatch):
    db = tmp_path / "ledger.db"
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
    with Ledger.open(db) as ledger:  # a schema 3 file, written as schema 3 code wrote it
        ledger._conn.execute("INSERT INTO images (id, idx, fingerprint, position)"
                             " VALUES ('a', 1, 'f', 0)")
    monkeypatch.undo()
    with Ledger.open(db) as ledger:
        assert [row.id for row in ledger.batch.submittable()] == ["a"]
        job = ledger.batch.record_job(provider="gemini", model="m", display="d1",
                                      images=[(("a", 1), "f")])
        assert ledger.batch.submittable() == [] and ledger.batch.in_open_jobs() == 1
        with pytest.raises(LedgerError, match="already in a job"):  # never in two live jobs
            ledger.batch.record_job(provider="gemini", model="m", display="d2",
                                    images=[(("a", 1), "f")])
        assert len(ledger.batch.jobs()) == 1  # the refused one left nothing behind
        assert ledger.batch.close(job, outcome="failed", error="x", kind="transient",
                                  message="job failed") == 1
        (row,) = ledger.rows()
        assert (row.status, row.error_message) == ("pending", "job failed")
        assert [r.id for r in ledger.batch.submittable()] == ["a"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)
    conn.close()


def test_gemini_jobs_are_read_whatever_the_state_prefix_and_count_encoding():
    doc = {"name": "batches/abc", "metadata": {
        "displayName": "mine", "state": "JOB_STATE_RUNNING",
        "batchStats": {"requestCount": "9", "successfulRequestCount": "4"}}}
    job = gemini_batch.parse_job(doc)
    assert (job.phase, job.total, job.succeeded, job.failed) == (JobPhase.RUNNING, 9, 4, 0)
    done = gemini_batch.parse_job({"name": "batches/abc", "done": True, "metadata": {
        "state": "BATCH_STATE_SUCCEEDED"}, "response": {"responsesFile": "files/batch-abc"}})
    assert done.phase == JobPhase.SUCCEEDED and done.results == ("file", "files/batch-abc")
    inline = gemini_batch.parse_job({"name": "batches/x", "state": "BATCH_STATE_EXPIRED",
                                     "output": {"inlinedResponses": {"inlinedResponses": []}}})
    assert inline.phase == JobPhase.EXPIRED and inline.results == ("inline", [])
    assert gemini_batch.phase_of("BATCH_STATE_SOMETHING_NEW") == JobPhase.PENDING
    with pytest.raises(ValueError, match="unusable job name"):
        gemini_batch.parse_job({"name": "batches/../../v1beta/models", "metadata": {}})


def test_openai_batches_are_read_with_their_files():
    job = openai_batch.parse_job({"id": "batch_1", "status": "expired", "output_file_id":
                                  "file-out", "error_file_id": "file-err", "request_counts":
                                  {"total": 3, "completed": 2, "failed": 1},
                                  "metadata": {"nbbatch_job": "mine"}})
    assert (job.phase, job.display_name, job.results) == (JobPhase.EXPIRED, "mine",
                                                           ("file-out", "file-err"))


def lines_of(chunks: list[bytes], *, status: int = 200, cap: int = 100) -> list[bytes]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, stream=httpx.ByteStream(b"".join(chunks))
                              if status != 200 else _Chunks(chunks))

    async def main() -> list[bytes]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return [line async for line in get_lines(
                client, "http://x/file", headers={}, timeout=5, max_line_bytes=cap,
                provider="gemini", redact=redactor(None),
                on_error=lambda raw: TransientError(f"HTTP {raw.status}"))]
    return asyncio.run(main())


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


def test_results_are_streamed_line_by_line_with_a_cap_per_line():
    assert lines_of([b'{"a"', b':1}\n{"b":2}\n\n{"c"', b":3}"]) == \
        [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    with pytest.raises(TransientError, match="larger than 100 bytes"):
        lines_of([b"x" * 60, b"y" * 60, b"\n"])
    with pytest.raises(TransientError, match="HTTP 500"):
        lines_of([b"{}"], status=500)


def test_what_a_batch_api_says_about_a_job_never_carries_the_key():
    from nbbatch.model import ProviderConfig

    secret = "AIzaSecretKey-123456789"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-goog-api-key"] == secret
        return httpx.Response(200, json={"name": "batches/abc", "done": True, "error": {
            "code": 3, "message": f"bad key {secret} in request"},
            "metadata": {"state": "BATCH_STATE_FAILED"}})

    async def main():
        client = gemini_batch.GeminiBatchClient(
            ProviderConfig("gemini", base_url="http://x"), secret,
            transport=httpx.MockTransport(handler))
        try:
            return await client.get("batches/abc")
        finally:
            await client.aclose()

    status = asyncio.run(main())
    assert status.phase == JobPhase.FAILED
    assert secret not in status.error and "bad key" in status.error


def test_inline_results_without_keys_are_matched_by_their_order():
    import base64

    from nbbatch.errors import BlockedError
    from nbbatch.model import ProviderConfig
    from nbbatch.providers.base import BatchStatus, GeneratedImage

    image = base64.b64encode(_png()).decode()
    answers = [
        {"response": {"candidates": [{"content": {"parts": [
            {"inlineData": {"mimeType": "image/png", "data": image}}]}, "finishReason": "STOP"}]}},
        {"response": {"promptFeedback": {"blockReason": "SAFETY"}}},
        {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}},
    ]
    status = BatchStatus("batches/x", None, "BATCH_STATE_SUCCEEDED", JobPhase.SUCCEEDED,
                         results=("inline", answers))

    async def main():
        client = gemini_batch.GeminiBatchClient(ProviderConfig("gemini"), "k")
        try:
            return [item async for item in client.results(status)]
        finally:
            await client.aclose()

    (k0, a0), (k1, a1), (k2, a2) = asyncio.run(main())
    assert (k0, k1, k2) == (0, 1, 2)
    assert isinstance(a0, GeneratedImage) and isinstance(a1, BlockedError)
    assert isinstance(a2, TransientError)  # classified exactly as an online 500
