"""The simulator's batch APIs as the official SDKs see them (over 127.0.0.1): what a user's
own google-genai or openai script would do against `nbbatch simulate` works as against the
real APIs. nbbatch itself uses neither SDK."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest
from google import genai
from google.genai import types

from nbbatch.sim import SimulatorOptions, SimulatorServer

KEY = "sdk-test-key"


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(SimulatorOptions(api_key=KEY, batch_duration=0.2)) as server:
        yield server


def finished(get, name, done):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = get(name)
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def test_google_genai_batches_and_files(sim, tmp_path):
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=sim.url,
                                                                      api_version="v1beta"))
    inline = client.batches.create(model="gemini-3-pro-image", src=[
        {"contents": [{"parts": [{"text": "a fox"}], "role": "user"}],
         "config": {"response_modalities": ["TEXT", "IMAGE"]}, "metadata": {"key": "fox"}}],
        config={"display_name": "sdk-inline"})
    assert inline.state == types.JobState.JOB_STATE_PENDING
    job = finished(lambda n: client.batches.get(name=n), inline.name,
                   lambda j: j.state == types.JobState.JOB_STATE_SUCCEEDED)
    (answer,) = job.dest.inlined_responses
    assert answer.metadata == {"key": "fox"}
    parts = answer.response.candidates[0].content.parts
    assert parts[-1].inline_data.mime_type == "image/jpeg"

    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"key": "whale", "request": {
        "contents": [{"parts": [{"text": "a whale"}]}]}}) + "\n")
    uploaded = client.files.upload(file=requests, config={"mime_type": "application/jsonl"})
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == requests.stat().st_size
    from_file = client.batches.create(model="gemini-3-pro-image", src=uploaded.name,
                                      config={"display_name": "sdk-file"})
    listed = {j.display_name: j.name for j in client.batches.list(config={"page_size": 10})}
    assert listed["sdk-file"] == from_file.name and listed["sdk-inline"] == inline.name
    job = finished(lambda n: client.batches.get(name=n), from_file.name,
                   lambda j: j.state == types.JobState.JOB_STATE_SUCCEEDED)
    lines = client.files.download(file=job.dest.file_name).splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["whale"]
    assert "candidates" in json.loads(lines[0])["response"]

    doomed = client.batches.create(model="gemini-3-pro-image", src=uploaded.name,
                                   config={"display_name": "sdk-cancel"})
    client.batches.cancel(name=doomed.name)
    assert client.batches.get(name=doomed.name).state == types.JobState.JOB_STATE_CANCELLED


def test_openai_batches_and_files(sim):
    client = openai.OpenAI(api_key=KEY, base_url=f"{sim.url}/v1", max_retries=0)
    line = {"custom_id": "fox", "method": "POST", "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1", "prompt": "a fox", "size": "1024x1024"}}
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())),
                                   purpose="batch")
    assert uploaded.purpose == "batch"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                  completion_window="24h", metadata={"mine": "yes"})
    assert batch.status == "validating" and batch.metadata == {"mine": "yes"}
    assert batch.id in [b.id for b in client.batches.list(limit=10)]
    batch = finished(client.batches.retrieve, batch.id, lambda b: b.status == "completed")
    assert batch.request_counts.completed == 1 and batch.error_file_id is None
    result = json.loads(client.files.content(batch.output_file_id).content)
    assert result["custom_id"] == "fox" and result["response"]["status_code"] == 200
    assert result["response"]["body"]["data"][0]["b64_json"]

    doomed = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/images/generations",
                                   completion_window="24h")
    assert client.batches.cancel(doomed.id).status == "cancelled"
