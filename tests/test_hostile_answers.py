"""Answers built to exhaust memory or to pass as images, over real sockets: each is refused
within its caps — the decoded size, one content coding, the values JSON may build, pixels that
decode — and the image stays pending with a message that says why."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib

import httpx
import pytest
import yaml
from PIL import Image

from nbbatch.engine.run import run_batch
from nbbatch.settings import RunOptions, resolve
from tests.e2e_helpers import KEY, write_manifest
from tests.test_reliability import (
    CAP_1MB,
    MEASURE_PEAK,
    HostileServer,
    answer,
    cli_with,
    image_answer,
    run_measured,
    status_doc,
)

pytestmark = pytest.mark.e2e


def gzip(data: bytes) -> bytes:
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
    return squeeze.compress(data) + squeeze.flush()


def stacked_gzip(h, server):
    body = gzip(gzip(bytes(200 * 2**20)))  # a few KB that inflate twice to 200 MB
    answer(h, 200, body, {"Content-Encoding": "gzip, gzip"})


def one_chunk_deflate_bomb(h, server):
    squeeze = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate, no zlib header
    body = squeeze.compress(bytes(300 * 2**20)) + squeeze.flush()
    answer(h, 200, body, {"Content-Encoding": "deflate"})  # written in one piece


def bloated_json(h, server):
    body = b'{"candidates": [' + b"{}," * (3 * 2**20) + b'{}]}'  # 9 MB: 3 million dicts
    answer(h, 200, body)


@pytest.mark.parametrize(("behaviour", "patch", "expected"), [
    (stacked_gzip, CAP_1MB, "the response stacks content codings (gzip, gzip)"),
    (one_chunk_deflate_bomb, CAP_1MB, "response larger than 1048576 bytes"),
    (bloated_json, "", "the response holds more than 100000 JSON values (refused unparsed)"),
], ids=["gzip, gzip", "deflate bomb in one chunk", "57 MB of {}, in small"])
def test_an_answer_built_to_exhaust_memory_is_refused_within_its_caps(
        tmp_path, behaviour, patch, expected):
    with HostileServer(behaviour) as server:
        manifest = write_manifest(tmp_path / "m.yaml", ["hostile"], base_url=server.url,
                                  max_attempts=1)
        code, _took, peak_mb = run_measured(tmp_path,
                                            cli_with(MEASURE_PEAK + patch, "run", manifest))
    stderr = (tmp_path / "cli.err").read_text()
    assert code == 75, stderr
    assert "Traceback" not in stderr
    assert peak_mb < 150, f"{peak_mb:.0f} MB"
    item = status_doc(tmp_path / "out")["items"][0]
    assert item["status"] == "pending" and expected in item["error"]["message"]


def png_with_broken_pixels() -> bytes:
    """A PNG whose every chunk checksum is right and whose pixel data is no zlib stream."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c" + b"?" * 99)
            + chunk(b"IEND", b""))


def real_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def run_in_process(tmp_path, url):
    path = write_manifest(tmp_path / "m.yaml", ["answer"], base_url=url, max_attempts=1)
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    return run_batch(settings, env={"GEMINI_API_KEY": KEY}, cwd=tmp_path,
                     handle_signals=False), settings.out


@pytest.mark.parametrize(("behaviour", "expected"), [
    (lambda h, s: answer(h, 200, image_answer(png_with_broken_pixels())),
     "received bytes are not an image (declared image/png): damaged or truncated image"),
    (lambda h, s: answer(h, 200, gzip(json.dumps(image_answer(real_png())).encode()),
                         {"Content-Encoding": "br"}),
     "content coding 'br', which was not asked for (gzip, deflate)"),
    (lambda h, s: answer(h, 200, b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}),
     "the compressed response does not decode"),
], ids=["PNG pixels that do not decode", "a coding not asked for", "gzip that is not"])
def test_an_answer_that_is_no_image_stays_pending(tmp_path, behaviour, expected):
    with HostileServer(behaviour) as server:
        summary, out = run_in_process(tmp_path, server.url)
    assert summary.exit_code == 75
    item = status_doc(out)["items"][0]
    assert item["status"] == "pending" and expected in item["error"]["message"]
    assert not list((out / "images").iterdir())


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate (raw)", "identity"])
def test_compressed_answers_are_still_read(tmp_path, coding):
    doc = json.dumps(image_answer(real_png())).encode()
    if coding == "gzip":
        body = gzip(doc)
    elif coding == "deflate":
        body = zlib.compress(doc)
    elif coding == "deflate (raw)":
        squeeze = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = squeeze.compress(doc) + squeeze.flush()
    else:
        body = doc
    header = coding.split()[0]
    with HostileServer(lambda h, s: answer(h, 200, body, {"Content-Encoding": header})) as srv:
        summary, out = run_in_process(tmp_path, srv.url)
    assert summary.exit_code == 0
    assert yaml.safe_load(json.dumps(status_doc(out)))["items"][0]["status"] == "done"


# -- delays a server asks for ---------------------------------------------------------------

ABSURD = ["1e308", "1e400", "9" * 320, "inf", "nan", "-5", "Fri, 31 Dec 9999 23:59:59 GMT"]


def _delay_answer(where: str, value: str) -> httpx.Response:
    error = {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    if where == "retryDelay":
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": f"{value}s"}]
        return httpx.Response(429, json={"error": error})
    header = "retry-after-ms" if where == "retry-after-ms" else "Retry-After"
    return httpx.Response(503, headers={header: value},
                          json={"error": {**error, "code": 503, "status": "UNAVAILABLE"}})


@pytest.mark.parametrize("where", ["Retry-After", "retry-after-ms", "retryDelay"])
@pytest.mark.parametrize("value", ABSURD, ids=lambda v: v[:12])
def test_an_absurd_server_delay_reads_as_a_short_sane_message(tmp_path, where, value):
    path = write_manifest(tmp_path / "m.yaml", ["delay"], base_url="http://127.0.0.1:9",
                          max_attempts=2)
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    events: list[str] = []
    sent: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":  # generation requests (the pre-flight GETs are free)
            sent.append(request)
        return _delay_answer(where, value)

    transport = httpx.MockTransport(respond)
    summary = run_batch(settings, env={"GEMINI_API_KEY": KEY}, cwd=tmp_path,
                        handle_signals=False, on_event=lambda e, p: events.append(e.message),
                        transport_factory=lambda name: transport)
    texts = [*events, summary.stop_reason or "", status_doc(settings.out)["items"][0]
             ["error"]["message"]]
    for text in texts:
        assert not re.search(r"\d{16}", text), text  # no 300-digit numbers
        assert not re.search(r"\b(inf|nan)\b", text, re.IGNORECASE), text
        assert len(text) < 400, text
    assert summary.exit_code == 75
    assert summary.elapsed < 30  # nobody waited for the delay asked
    forever = {"Retry-After": ABSURD[:4] + ABSURD[-1:], "retry-after-ms": ABSURD[:4],
               "retryDelay": ["9" * 320]}[where]  # what each form can spell "forever" with
    if value in forever:  # the provider is done for today, not retried at once
        assert len(sent) == 1 and "asks to wait more than 100 days" in texts[-1]
    else:  # meaningless in that form: the usual backoff applies
        assert len(sent) == 2


def test_json_is_read_within_its_value_bound_whichever_parser_reads_it():
    from nbbatch.providers.answer_json import MAX_JSON_VALUES, parse_json

    image_line = b'{"key":"k","response":{"data":"' + b"A" * 2_000_000 + b'"}}'
    assert parse_json(image_line)["response"]["data"] == "A" * 2_000_000  # few commas: read
    assert parse_json(b"[" + b"{}," * MAX_JSON_VALUES + b"{}]") is None  # too many values
    assert parse_json(b"[" * 200_000 + b"]" * 200_000) is None  # no commas, too deep
    assert parse_json(b'{"a": NaN, "b": 1e999}') == {"a": pytest.approx(float("nan"), nan_ok=True),
                                                     "b": float("inf")}  # as json read it
