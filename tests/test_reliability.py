"""Reliability under hostile conditions, end to end through the real CLI.

Signals, two runs on one folder, hostile manifests, hostile responses, secrets in echoed
errors, and a failing disk. Each test proves what must not happen did not: the simulator's
request log shows nothing was sent, the output folder shows nothing was written, the ledger and
the images check out with the same code as the chaos benchmark (benchmarks/chaos.py).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import gc
import io
import json
import os
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import nbbatch.store.atomic
import nbbatch.store.files
from benchmarks.chaos import check_final, inspect_output
from nbbatch.cli import app
from nbbatch.engine.run import run_batch
from nbbatch.errors import ExitCode, FolderLockedError, LedgerError
from nbbatch.settings import RunOptions, resolve
from nbbatch.sim import SimulatorOptions, SimulatorServer
from nbbatch.sim.inprocess import simulator_transport
from nbbatch.store.ledger import Ledger
from nbbatch.store.lock import FolderLock
from tests.e2e_helpers import (
    KEY,
    configure,
    done_ids,
    env,
    ledger_rows,
    nbbatch_cmd,
    requests_log,
    run_cli,
    start_cli,
    wait_until,
    write_manifest,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=5)) as server:
        yield server


def cli_with(patch: str, *args) -> list[str]:
    """The real CLI, with `patch` (Python source) run first: fault injection in one place."""
    boot = f"import sys\n{patch}\nsys.argv[0] = 'nbbatch'\nfrom nbbatch.cli import main\nmain()\n"
    return [sys.executable, "-c", boot, *map(str, args)]


def status_doc(out: Path) -> dict:
    result = CliRunner().invoke(app, ["status", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def attempts(out: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{out / 'ledger.db'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM attempts ORDER BY attempt_id").fetchall()


# ------------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_exits_at_once_despite_slow_requests_and_resume_completes(
        tmp_path, sim, signum, code):
    configure(sim.url, latency=[0.05, 0.05])
    n = 30
    manifest = write_manifest(tmp_path / "m.yaml", [f"sig {i}" for i in range(n)],
                              base_url=sim.url, concurrency=3, interval="0.1")
    out = tmp_path / "out"
    proc = start_cli(tmp_path, "run", manifest)
    assert wait_until(lambda: (out / "ledger.db").exists() and len(done_ids(out)) >= 2)
    configure(sim.url, latency=[5, 5])  # what is sent from now on stays in flight for 5 s
    sent = len(requests_log(sim.url))
    assert wait_until(lambda: len(requests_log(sim.url)) >= sent + 2)

    started = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(10) == code
    took = time.monotonic() - started
    assert took < 2.0, f"exit took {took:.1f}s: requests in flight (5 s each) held it up"

    snap = inspect_output(out)  # integrity_check ok, every file whole and the ledger's
    assert {r["status"] for r in ledger_rows(out)} <= {"done", "pending"}
    assert not snap.temps and snap.files == len(snap.secured)
    assert "interrupted" in {a["outcome"] for a in attempts(out)}  # in flight: possibly billed
    done_prompts = {f"sig {key[0][3:]}" for key in snap.secured}

    configure(sim.url, latency=[0, 0])
    write_manifest(manifest, [f"sig {i}" for i in range(n)], base_url=sim.url, concurrency=3,
                   interval="0.01")  # pacing is not part of an image: nothing is made again
    before = len(requests_log(sim.url))
    result = run_cli(tmp_path, "resume")
    assert result.returncode == 0, result.stderr
    check_final(out, n)
    again = {r["prompt"] for r in requests_log(sim.url)[before:]} & done_prompts
    assert not again, f"done images requested again: {again}"


SLOW_SAVE = """
import os, time
import nbbatch.store.files as storage
real_write, saves = storage.ImageStore.write, [0]
def write(self, relative, data, sha256):
    saves[0] += 1
    if saves[0] == 2:  # the second image: a save that takes 30 s (a dying disk, say)
        with open(os.environ["SLOW_SAVE_MARKER"] + ".tmp", "w") as marker:
            marker.write(relative)
        os.rename(marker.name, os.environ["SLOW_SAVE_MARKER"])
        time.sleep(30)
    return real_write(self, relative, data, sha256)
storage.ImageStore.write = write
"""


def test_a_second_sigint_while_the_first_is_handled_stops_at_once(tmp_path, sim):
    n = 6
    manifest = write_manifest(tmp_path / "m.yaml", [f"twice {i}" for i in range(n)],
                              base_url=sim.url, concurrency=1)
    out, marker = tmp_path / "out", tmp_path / "saving"
    with open(tmp_path / "cli.log", "wb") as log:
        proc = subprocess.Popen(cli_with(SLOW_SAVE, "run", manifest), cwd=tmp_path,
                                env={**env(tmp_path), "SLOW_SAVE_MARKER": str(marker)},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(marker.exists)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        # The first Ctrl-C cancelled the requests but waits for the save under way...
        assert proc.poll() is None, "the first SIGINT should let the save in progress finish"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # ...the second one does not wait
        assert proc.wait(10) == 130
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert took < 1.0, f"the second SIGINT took {took:.1f}s to stop the run"

    # Stopped mid-save: still consistent. The slow image's save was recorded as under way
    # but its bytes never reached the disk, so it is not done and will be made again. (A save
    # the signal cut short after its bytes were written counts as secured: finished next run.)
    snap = inspect_output(out)
    slow = marker.read_text().removeprefix("images/").removesuffix(".jpg")
    assert (slow, 1) not in snap.secured and snap.intents >= 1
    assert snap.files == len(snap.secured) < n
    left = {f"twice {key[0][3:]}" for key in {(f"img{i}", 1) for i in range(n)} - snap.secured}
    before = len(requests_log(sim.url))
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 0, result.stderr
    check_final(out, n)
    assert Counter(r["prompt"] for r in requests_log(sim.url)[before:]) == dict.fromkeys(left, 1)


# ------------------------------------------------------------------------- concurrent runs


def test_two_runs_started_together_one_works_the_other_exits_75_naming_it(tmp_path, sim):
    configure(sim.url, latency=[0.5, 0.5])
    n = 6
    manifest = write_manifest(tmp_path / "m.yaml", [f"race {i}" for i in range(n)],
                              base_url=sim.url, concurrency=2)
    procs = []
    for i in range(2):  # the same moment: both start, import, and reach the lock together
        err = open(tmp_path / f"err{i}", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(nbbatch_cmd("run", manifest, "--quiet"), cwd=tmp_path,
                                       env=env(tmp_path), stdout=subprocess.DEVNULL,
                                       stderr=err), err))
    started, ended = time.monotonic(), {}
    while len(ended) < 2 and time.monotonic() - started < 30:
        for proc, _ in procs:
            if proc.pid not in ended and proc.poll() is not None:
                ended[proc.pid] = time.monotonic() - started
        time.sleep(0.01)
    for proc, err in procs:
        proc.wait(5)
        err.close()
    codes = sorted(proc.returncode for proc, _ in procs)
    assert codes == [0, 75]
    winner = next(p for p, _ in procs if p.returncode == 0)
    loser, i = next((p, i) for i, (p, _) in enumerate(procs) if p.returncode == 75)
    message = (tmp_path / f"err{i}").read_text()
    assert "in use by another nbbatch run" in message and f"pid {winner.pid} " in message
    assert ended[loser.pid] < ended[winner.pid] - 0.8  # at once, not after waiting its turn
    log = requests_log(sim.url)
    assert len(log) == n and Counter(r["prompt"] for r in log) == {f"race {i}": 1 for i in range(n)}
    with sqlite3.connect(tmp_path / "out/ledger.db") as db:
        assert db.execute("SELECT pid FROM runs").fetchall() == [(winner.pid,)]
    check_final(tmp_path / "out", n)


def test_a_run_that_took_the_lock_a_moment_ago_is_named_not_unknown(tmp_path):
    """The holder writes its pid just after taking the lock; a run refused in between must not
    answer 'holder unknown' (the race of two runs started together)."""
    fd = os.open(tmp_path / ".nbbatch.lock", os.O_RDWR | os.O_CREAT)
    holder = json.dumps({"pid": 4242, "host": "there", "since": time.time()}).encode()
    writes_its_name = threading.Timer(0.2, os.pwrite, (fd, holder, 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        writes_its_name.start()
        with pytest.raises(FolderLockedError, match="pid 4242 on there"):
            FolderLock(tmp_path).acquire()
    finally:
        writes_its_name.cancel()
        writes_its_name.join()
        os.close(fd)


def test_a_lock_file_left_by_a_killed_run_does_not_block_the_next(tmp_path, sim):
    configure(sim.url, latency=[0.3, 0.3])
    n = 12
    manifest = write_manifest(tmp_path / "m.yaml", [f"stale {i}" for i in range(n)],
                              base_url=sim.url, concurrency=2)
    out = tmp_path / "out"
    proc = start_cli(tmp_path, "run", manifest)
    assert wait_until(lambda: (out / "ledger.db").exists() and len(done_ids(out)) >= 1)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert json.loads((out / ".nbbatch.lock").read_text())["pid"] == proc.pid  # left behind
    configure(sim.url, latency=[0, 0])
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 0, result.stderr
    check_final(out, n)


# --------------------------------------------------------------------- hostile manifests


def _base(tmp_path: Path, url: str, **changes) -> dict:
    path = write_manifest(tmp_path / "m.yaml", ["a fine prompt"], base_url=url)
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    return doc


def _yaml(tmp_path, url, **changes) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_base(tmp_path, url, **changes)))
    return path


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))
            + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def alias_bomb(tmp_path, url):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    (tmp_path / "m.yaml").write_text("\n".join([*lines, "prompts: *a9", ""]))
    return "YAML aliases (*name) are not allowed"


def python_tag(tmp_path, url):
    (tmp_path / "m.yaml").write_text(
        f'version: 1\nprompts: !!python/object/apply:os.system ["touch {tmp_path}/pwned"]\n')
    return "language-specific tags are not allowed"


def huge_manifest(tmp_path, url):
    with open(tmp_path / "m.yaml", "wb") as f:
        f.truncate(51 * 2**20)  # sparse: nothing is written, and nothing may be read
    return "the limit is 50 MB"


def binary_garbage(tmp_path, url):
    (tmp_path / "m.yaml").write_bytes(bytes(range(256)) * 64)
    return "not UTF-8 text"


def _id(bad):
    def case(tmp_path, url):
        _yaml(tmp_path, url, prompts=[{"id": bad, "prompt": "x"}])
        return f"unsafe id {bad!r}"
    case.__name__ = f"id {bad}"
    return case


def nul_in_id_jsonl(tmp_path, url):
    (tmp_path / "p.jsonl").write_text('{"id": "a\\u0000b", "prompt": "x"}\n')
    _yaml(tmp_path, url, prompts=None, prompts_file="p.jsonl")
    return "p.jsonl:1: id: unsafe id 'a\\x00b'"


def escaping_id_csv(tmp_path, url):
    (tmp_path / "p.csv").write_text("id,prompt\nok,fine\n../../etc/cron.d/x,evil\n")
    _yaml(tmp_path, url, prompts=None, prompts_file="p.csv")
    return "p.csv:3: id: unsafe id '../../etc/cron.d/x'"


def nul_byte_in_csv(tmp_path, url):
    (tmp_path / "p.csv").write_bytes(b"id,prompt\na\x00b,x\n")
    _yaml(tmp_path, url, prompts=None, prompts_file="p.csv")
    return "p.csv:2: id: unsafe id 'a\\x00b'"


def nul_byte_in_reference_path(tmp_path, url):
    (tmp_path / "p.csv").write_bytes(b"id,prompt,images\na,x,refs/a\x00.png\n")
    _yaml(tmp_path, url, prompts=None, prompts_file="p.csv")
    return "p.csv:2: images[0]: cannot use reference image path 'refs/a\\x00.png'"


def _windows(name):
    def case(tmp_path, url):
        _yaml(tmp_path, url, prompts=[{"id": name, "prompt": "x"}])
        return "reserved file name on Windows"
    case.__name__ = f"windows {name}"
    return case


def _reference(kind):
    def case(tmp_path, url):
        ref = tmp_path / "refs" / "r.png"
        ref.parent.mkdir()
        if kind == "missing":
            expected = "reference image 'refs/r.png' not found"
        elif kind == "not an image":
            ref.write_text("<html>not a picture</html>")
            expected = "is not a PNG, JPEG or WEBP file"
        elif kind == "huge":
            with open(ref, "wb") as f:
                f.write(_png_header(64, 64))
                f.truncate(21 * 2**20)  # sparse
            expected = "is 21.0 MB; the limit is 20 MB"
        elif kind == "a device":
            ref.symlink_to("/dev/zero")
            expected = "is not a file"
        else:
            ref.mkdir()
            expected = "is not a file"
        _yaml(tmp_path, url, prompts=[{"id": "r", "prompt": "x", "images": ["refs/r.png"]}])
        return expected
    case.__name__ = f"reference {kind}"
    return case


def _csv(header, rows, expected):
    def case(tmp_path, url):
        (tmp_path / "p.csv").write_text("\n".join([header, *rows, ""]))
        _yaml(tmp_path, url, prompts=None, prompts_file="p.csv")
        return expected
    case.__name__ = f"csv {header}"
    return case


HOSTILE_MANIFESTS = [
    alias_bomb, python_tag, huge_manifest, binary_garbage,
    _id("../x"), _id("/abs"), _id(".."), _id("a/b"), _id("x\n"), nul_in_id_jsonl,
    escaping_id_csv, nul_byte_in_csv, nul_byte_in_reference_path,
    _windows("CON"), _windows("nul.txt"), _windows("com1"), _windows("LPT9.jpg"),
    _reference("missing"), _reference("not an image"), _reference("huge"),
    _reference("a device"), _reference("a folder"),
    _csv("id,prompt,colour", ["a,b,red"], "unknown column 'colour' in the header"),
    _csv("id,count", ["a,2"], "the header has no 'prompt' column"),
    _csv("id,prompt", ["a,b,c"], "this row has 3 cells but the header has 2 columns"),
]


@pytest.mark.parametrize("case", HOSTILE_MANIFESTS, ids=lambda c: c.__name__)
def test_a_hostile_manifest_exits_2_sends_nothing_and_writes_nothing(
        tmp_path, sim, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    expected = case(tmp_path, sim.url)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", "m.yaml"])
    assert result.exit_code == 2, result.output
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith("error: "), "one clear line, not a traceback"
    assert time.monotonic() - started < 5
    assert requests_log(sim.url) == []
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", ["/dev/zero", "a pipe"])
def test_a_manifest_that_never_ends_is_refused_unread(tmp_path, sim, kind):
    manifest = Path("/dev/zero")
    if kind == "a pipe":
        manifest = tmp_path / "m.yaml"
        os.mkfifo(manifest)  # nobody writes to it: reading would wait for ever
    result = run_cli(tmp_path, "run", manifest, timeout=20)
    assert result.returncode == 2
    assert "cannot read the manifest: it is a device or a pipe, not a file" in result.stderr
    assert requests_log(sim.url) == []


def test_an_images_folder_that_links_elsewhere_is_refused_before_anything(tmp_path, sim):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    manifest = write_manifest(tmp_path / "m.yaml", ["p"], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 2, result.stderr
    assert "images is a symbolic link" in result.stderr and "remove the link" in result.stderr
    assert requests_log(sim.url) == []
    assert list(elsewhere.iterdir()) == []
    assert not (out / "ledger.db").exists()


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path, sim):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nbbatch.lock").symlink_to(precious)
    manifest = write_manifest(tmp_path / "m.yaml", ["p"], base_url=sim.url)
    result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 2, result.stderr
    assert ".nbbatch.lock is a symbolic link" in result.stderr
    assert precious.read_text() == "do not truncate me"
    assert requests_log(sim.url) == [] and not (out / "ledger.db").exists()


# --------------------------------------------------------------------- hostile responses


class HostileServer:
    """A tiny HTTP server on 127.0.0.1 that answers every request with `behaviour`."""

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.received: list[tuple[str, str, dict]] = []
        self.sent = 0  # body bytes the behaviour managed to push out
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.command == "GET" and "/models/" in self.path:
                    # A gateway without the metadata route: pre-flight falls back.
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.received.append((self.command, self.path, dict(self.headers)))
                self.close_connection = True  # one answer per connection, then hang up
                # The client hanging up is what most behaviours expect.
                with contextlib.suppress(OSError):
                    outer.behaviour(self, outer)

            do_GET = do_POST = handle_one

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(handler, status: int, doc, headers: dict | None = None) -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def image_answer(data: bytes, mime: str = "image/png", **extra) -> dict:
    part = {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}
    return {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}], **extra}


def claims_five_gigabytes(h, server):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(5 * 10**9))
    h.end_headers()
    chunk = b"0" * 2**16
    while server.sent < 2**30 and not server.stopping.is_set():
        h.wfile.write(chunk)
        server.sent += len(chunk)


def endless_chunks(h, server):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"0" * 2**16
    while server.sent < 2**30 and not server.stopping.is_set():
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        server.sent += len(chunk)


def gzip_bomb(h, server):
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip
    body = b"".join(squeeze.compress(bytes(2**20)) for _ in range(32)) + squeeze.flush()
    answer(h, 200, body, {"Content-Encoding": "gzip"})  # ~140 KB that inflates to 32 MB
    server.sent += len(body)


def drip(h, server):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "1000")
    h.end_headers()
    while server.sent < 1000 and not server.stopping.wait(0.2):
        h.wfile.write(b" ")
        h.wfile.flush()
        server.sent += 1


def reset_mid_body(h, server):
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b'{"candidates": [{"content": {"parts": [{"inlineData": {"data": "iVBOR')
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()  # linger 0: the peer gets a TCP reset, not a clean end
    h.close_connection = True


CAP_1MB = "import nbbatch.providers.gemini as gemini\ngemini.MAX_RESPONSE_BYTES = 2**20"


# The child's own high-water mark. Not wait4's ru_maxrss: Linux carries the parent's resident
# size at fork time into it, so a large pytest process would be measured instead of nbbatch.
MEASURE_PEAK = """import atexit
def _record_peak():
    with open('/proc/self/status') as status, open('peak-kb', 'w') as out:
        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))
atexit.register(_record_peak)
"""


def run_measured(tmp_path: Path, cmd: list[str]) -> tuple[int, float, float]:
    """Run `cmd`; return its exit code, seconds, and peak memory in MB (written by
    MEASURE_PEAK when the command carries it, else wait4's upper bound)."""
    started = time.monotonic()
    with open(tmp_path / "cli.out", "wb") as out, open(tmp_path / "cli.err", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(tmp_path), stdout=out, stderr=err)
    guard = threading.Timer(60, proc.kill)
    guard.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        guard.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_file = tmp_path / "peak-kb"
    peak_kb = int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss
    return proc.returncode, time.monotonic() - started, peak_kb / 1024


@pytest.mark.parametrize(("behaviour", "patch", "expected"), [
    (claims_five_gigabytes, "", "response larger than 268435456 bytes"),
    (endless_chunks, CAP_1MB, "response larger than 1048576 bytes"),
    (gzip_bomb, CAP_1MB, "response larger than 1048576 bytes"),
    (lambda h, s: answer(h, 200, image_answer(b"hello, not a picture")),
     "", "received bytes are not an image (declared image/png)"),
    (lambda h, s: answer(h, 200, image_answer(_png_header(100_000, 100_000))),
     "", "image has too many pixels (decompression bomb?)"),
    (lambda h, s: answer(h, 200, {"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": "!!not base64!!"}}]}}]}),
     "", "image data is not valid base64"),
    (reset_mid_body, "", "connection failed"),
], ids=["5 GB declared", "endless chunks", "gzip bomb", "not an image", "pixel bomb",
        "bad base64", "reset"])
def test_a_hostile_answer_leaves_the_image_pending_with_a_clear_error(
        tmp_path, behaviour, patch, expected):
    with HostileServer(behaviour) as server:
        manifest = write_manifest(tmp_path / "m.yaml", ["hostile"], base_url=server.url,
                                  max_attempts=2)
        code, took, peak_mb = run_measured(tmp_path,
                                           cli_with(MEASURE_PEAK + patch, "run", manifest))
    stderr = (tmp_path / "cli.err").read_text()
    assert code == 75, stderr
    assert "Traceback" not in stderr
    assert len(server.received) == 2  # both attempts, then it gave up for this run
    assert took < 10 and peak_mb < 200, f"{took:.1f}s, {peak_mb:.0f} MB"
    assert server.sent < 64 * 2**20, f"the client read {server.sent} bytes of a refused body"
    item = status_doc(tmp_path / "out")["items"][0]
    assert item["status"] == "pending" and item["file"] is None
    assert item["error"]["kind"] == "transient" and expected in item["error"]["message"]
    assert not list((tmp_path / "out/images").iterdir())


def test_a_slow_drip_is_cut_off_by_the_total_timeout(tmp_path):
    with HostileServer(drip) as server:
        manifest = write_manifest(
            tmp_path / "m.yaml", ["drip"], base_url=server.url, max_attempts=1,
            providers={"gemini": {"api_key_env": "GEMINI_API_KEY", "base_url": server.url,
                                  "timeout": 2}})
        code, _took, _ = run_measured(tmp_path, nbbatch_cmd("run", manifest))
    assert code == 75
    (attempt,) = attempts(tmp_path / "out")
    assert 1.9 <= attempt["latency"] < 3.0, attempt["latency"]  # one byte per 0.2 s, for 2 s
    assert attempt["possibly_billed"] == 1
    item = status_doc(tmp_path / "out")["items"][0]
    assert item["status"] == "pending"
    assert "no complete response within 2 s" in item["error"]["message"]


def test_a_redirect_elsewhere_is_not_followed_and_the_key_stays_home(tmp_path):
    with HostileServer(lambda h, s: answer(h, 200, image_answer(b""))) as thief:
        location = f"http://localhost:{thief.port}/v1beta/models/x:generateContent"
        redirect = lambda h, s: answer(h, 302, b"", {"Location": location})  # noqa: E731
        with HostileServer(redirect) as server:
            manifest = write_manifest(tmp_path / "m.yaml", ["a", "b"], base_url=server.url)
            result = run_cli(tmp_path, "run", manifest)
        assert thief.received == []  # the key never went there
    # A redirect means base_url is wrong: nothing to retry, the run stops (fatal, exit 4).
    assert result.returncode == 4, result.stderr
    assert len(server.received) == 1
    assert "unexpected redirect (HTTP 302)" in result.stderr and "check base_url" in result.stderr
    items = status_doc(tmp_path / "out")["items"]
    assert [i["status"] for i in items] == ["pending", "pending"]
    assert "unexpected redirect (HTTP 302)" in items[0]["error"]["message"]


# ------------------------------------------------------------------------------- secrets

SECRET = "AIzaSyD-s3cr3t-" + "Q9x7" * 6  # looks like a Gemini key, appears nowhere by chance


def echo_the_key(h, server):
    """Each answer quotes the key back, as a careless or hostile gateway might."""
    n = len(server.received)
    if n == 1:  # a JSON 500 with the key in its message and a header
        answer(h, 500, {"error": {"code": 500, "status": "INTERNAL",
                                  "message": f"internal error for key {SECRET}"}},
               {"X-Echo": SECRET})
    elif n == 2:  # a proxy's text page, the key just where a short quote would cut it
        page = ("x" * 186 + SECRET + " overloaded").encode()
        answer(h, 503, page, {"Content-Type": "text/plain"})
    elif n == 3:  # success, the key in every field that is stored or shown
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
        answer(h, 200, image_answer(buffer.getvalue(), modelVersion=f"model-{SECRET}",
                                    responseId=SECRET,
                                    usageMetadata={"note": SECRET, "totalTokenCount": 3}))
    elif n == 4:  # hangs: the run is killed here, leaving the ledger's -wal and -shm behind
        server.stopping.wait(30)
    else:  # the key "rejected", quoted in the message
        answer(h, 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                  "message": f"API key not valid: {SECRET}",
                                  "details": [{"reason": "API_KEY_INVALID"}]}})


def leaks(text: str | bytes) -> list[str]:
    """Every 12-character piece of the key found in `text`: half a key is a leak too."""
    data = text.encode() if isinstance(text, str) else text
    return [SECRET[i:i + 12] for i in range(len(SECRET) - 11)
            if SECRET[i:i + 12].encode() in data]


def test_a_key_echoed_by_the_server_appears_nowhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with HostileServer(echo_the_key) as server:
        manifest = write_manifest(tmp_path / "m.yaml", ["first", "second"], base_url=server.url,
                                  concurrency=1, max_attempts=5)
        out = tmp_path / "out"
        with open(tmp_path / "run1.out", "wb") as stdout, \
                open(tmp_path / "run1.err", "wb") as stderr:
            proc = subprocess.Popen(nbbatch_cmd("run", manifest, "--verbose"), cwd=tmp_path,
                                    env=env(tmp_path, SECRET), stdout=stdout, stderr=stderr)
        assert wait_until(lambda: len(server.received) >= 4)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        files = {p.name for p in out.iterdir()}
        assert {"ledger.db-wal", "ledger.db-shm"} <= files  # a killed run leaves them
        texts = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        second = run_cli(tmp_path, "run", manifest, "--verbose", key=SECRET)
    assert second.returncode == 4, second.stderr
    assert "API key not valid: ***" in second.stderr and "Check GEMINI_API_KEY" in second.stderr
    doc = status_doc(out)
    assert doc["counts"]["done"] == 1
    assert "internal error for key ***" in (tmp_path / "run1.out").read_text()  # --verbose

    texts.update({p: p.read_bytes() for p in out.rglob("*") if p.is_file()})
    texts.update({p: p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()})
    texts.update({"run1 stdout": (tmp_path / "run1.out").read_bytes(),
                  "run1 stderr": (tmp_path / "run1.err").read_bytes(),
                  "run2 stdout": second.stdout, "run2 stderr": second.stderr,
                  "status --json": json.dumps(doc)})
    found = {str(where): leaks(text) for where, text in texts.items() if leaks(text)}
    assert not found, f"the key leaked: {found}"


# --------------------------------------------------------------------------- disk trouble


class FailingDisk:
    """nbbatch.store.atomic's view of `os`: from the moment the save of `victim` begins, every `op`
    (open, write, fsync or replace of an image file) fails with `err`."""

    def __init__(self, op: str, err: int, victim: str) -> None:
        self.op, self.err, self.victim, self.broken = op, err, victim, False

    def __getattr__(self, name):
        return getattr(os, name)

    def _maybe_fail(self, op: str) -> None:
        if op == self.op and self.broken:
            raise OSError(self.err, os.strerror(self.err))

    def open(self, path, flags, mode=0o777):
        if flags & os.O_CREAT and f".{self.victim}." in str(path):
            self.broken = True
        if flags & os.O_CREAT and not str(path).endswith(".nbbatch.lock"):
            self._maybe_fail("open")
        return os.open(path, flags, mode)

    def write(self, fd, data):
        self._maybe_fail("write")
        return os.write(fd, data)

    def fsync(self, fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the image file, not its folder
            self._maybe_fail("fsync")
        return os.fsync(fd)

    def replace(self, src, dst):
        self._maybe_fail("replace")
        return os.replace(src, dst)


@pytest.mark.parametrize(("op", "err", "expected"), [
    ("write", errno.ENOSPC, "No space left on device (the disk is full)"),
    ("open", errno.EACCES, "Permission denied"),
    ("fsync", errno.EIO, "Input/output error"),
    ("replace", errno.EROFS, "Read-only file system"),
])
def test_a_failing_disk_stops_the_run_cleanly_and_a_later_run_completes(
        tmp_path, monkeypatch, op, err, expected):
    n = 10
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "output": "out",
        "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
        "pacing": {"interval": 0, "concurrency": 1},
        "prompts": [{"id": f"img{i}", "prompt": f"disk {i}"} for i in range(n)],
    }))
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    out = settings.out
    # Latency: the next request is still on its way when a save fails.
    transport = simulator_transport(SimulatorOptions(seed=1, latency=(0.03, 0.03)))

    monkeypatch.setattr(nbbatch.store.atomic, "os", FailingDisk(op, err, victim="img3"))
    summary = run_batch(settings, env={}, cwd=tmp_path, handle_signals=False,
                        transport_factory=lambda name: transport)
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert expected in summary.stop_reason and "img3.jpg" in summary.stop_reason
    rows = {r["id"]: r for r in ledger_rows(out)}
    assert [rows[f"img{i}"]["status"] for i in range(n)] == ["done"] * 3 + ["pending"] * (n - 3)
    assert rows["img3"]["error_kind"] == "storage" and expected in rows["img3"]["error_message"]
    # The run stopped sending once the disk failed: what was asked for is done, or failed to
    # save (a request already under way may have finished and hit the disk too).
    first = [r["prompt"] for r in transport.core.requests()]
    assert first[:4] == [f"disk {i}" for i in range(4)] and len(first) <= 5
    for prompt in first[4:]:
        assert rows[f"img{prompt[5:]}"]["error_kind"] == "storage"
    snap = inspect_output(out)  # nothing torn, no temporary file, no half-recorded save
    assert snap.files == 3 and not snap.temps and not snap.intents

    monkeypatch.setattr(nbbatch.store.atomic, "os", os)  # the disk is fine again
    again = run_batch(settings, env={}, cwd=tmp_path, handle_signals=False,
                      transport_factory=lambda name: transport)
    assert again.exit_code == ExitCode.OK
    check_final(out, n)
    second = [r["prompt"] for r in transport.core.requests()[len(first):]]
    assert second == [f"disk {i}" for i in range(3, n)]  # the done ones were not asked again


def test_a_ledger_that_cannot_be_written_stops_the_run_and_says_why(tmp_path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "output": "out",
        "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
        "pacing": {"interval": 0, "concurrency": 2},
        "prompts": [{"id": f"img{i}", "prompt": f"ledger {i}"} for i in range(10)],
    }))
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    transport = simulator_transport(SimulatorOptions(seed=1, latency=(0.01, 0.01)))
    real_begin_save = Ledger.begin_save

    def begin_save(self, key, **fields):  # the ledger's disk fills up at the fourth image
        if key[0] >= "img3":
            raise LedgerError(f"ledger write failed ({self.path}): database or disk is full")
        return real_begin_save(self, key, **fields)

    monkeypatch.setattr(Ledger, "begin_save", begin_save)
    try:
        summary = run_batch(settings, env={}, cwd=tmp_path, handle_signals=False,
                            transport_factory=lambda name: transport)
        reason = summary.stop_reason or ""
    except LedgerError as exc:
        reason = exc.message
    # The dead job tasks log "Task exception was never retrieved" when collected: let that
    # happen here, not in the middle of pytest's report (CPython 3.11 trips over it there).
    gc.collect()
    assert "database or disk is full" in reason
    # img3 failed to record; at most the requests then in flight may follow.
    assert len(transport.core.requests()) <= 4 + 2


def test_a_file_system_that_cannot_sync_folders_still_saves(tmp_path, monkeypatch):
    """fsync on a folder fails with EINVAL on some network and FUSE file systems: the image
    is already whole on disk then, so the save must not fail (it used to: every save did)."""

    class NoFolderSync:
        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return os.fsync(fd)

    store = nbbatch.store.files.ImageStore(tmp_path)
    store.prepare()
    data = _png_header(1, 1)
    monkeypatch.setattr(nbbatch.store.atomic, "os", NoFolderSync())
    store.write("images/a.png", data, nbbatch.store.files.sha256_hex(data))
    assert (tmp_path / "images/a.png").read_bytes() == data
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["a.png"]
