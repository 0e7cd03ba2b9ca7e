"""Bad input from the command line or the manifest: exit 2, one clear line, nothing sent.

Each case is one member of a class that was attacked; the test asserts the exit code, the
message that says what to fix, that no traceback escaped, and that no request went out.
"""

from __future__ import annotations

import os
import re
import socket
import time

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from nbbatch.cli import app


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-0123456789")


@pytest.fixture
def sent(monkeypatch):
    """Every request the run tried to send (none, in these tests)."""
    calls: list = []

    async def send(self, request, **kw):
        calls.append(request)
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return calls


def write(tmp_path, **changes):
    doc = {"version": 1, "output": "out",
           "providers": {"gemini": {"base_url": "http://127.0.0.1:9"}},
           "prompts": [{"id": "a", "prompt": "a red shoe"}]}
    doc.update(changes)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    return "m.yaml"


def refused(args, expected: str, sent_calls: list) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.output
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.output and sent_calls == []
    return result.stderr


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:99999", "is not a valid URL (Port out of range 0-65535)"),
    ("http://[::1", "is not a valid URL (Invalid IPv6 URL)"),
    ("http://", "names no host"),
    ("http://:8080", "names no host"),
    ("http://127.0.0.1:0", "port 0 cannot be connected to"),
    ("http://127.0.0.1:abc", "is not a valid URL"),
    ("https://gw.example/v1 beta", "must not contain spaces or control characters"),
    ("https://user:hunter2@gw.example", "must not carry a user name or password"),
    ("https://gw.example/v1?key=x", "must not have a query (?) or fragment (#)"),
    ("ftp://gw.example", "must start with https://"),
    ("http://256.256.256.256", "is not a valid URL (Invalid IPv4 address"),
    ("https://xn--a.example", "is not a valid URL (Codepoint U+0080"),
])
def test_a_base_url_that_cannot_be_used_is_refused_at_load(tmp_path, sent, url, expected):
    manifest = write(tmp_path, providers={"gemini": {"base_url": url}})
    for command in ("run", "plan"):
        message = refused([command, manifest], expected, sent)
        assert "m.yaml:" in message and "providers.gemini.base_url" in message
    assert not (tmp_path / "out").exists()


# -- flags -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "expected"), [
    (["--max-cost", "nan"], "--max-cost must be an amount in USD above 0, like 5 or 0.50; got nan"),
    (["--max-cost", "-1"], "--max-cost must be an amount in USD above 0, like 5 or 0.50; got -1"),
    (["--max-cost", "inf"], "--max-cost must be an amount in USD above 0"),
    (["--max-images", "0"], "--max-images must be at least 1; got 0"),
    (["--max-images", "-3"], "--max-images must be at least 1"),
    (["--max-duration="], "cannot read the duration ''"),
    (["--max-duration", "1..5h"], "cannot read the duration '1..5h'"),
    (["--max-duration", "1.2.3"], "cannot read the duration"),
    (["--max-duration", "."], "cannot read the duration"),
    (["--max-duration", "0"], "must be more than zero"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--concurrency", "100000000000000000000"], "--concurrency must be at most 256"),
    (["--interval", "nan"], "--interval: expected seconds"),
])
def test_a_budget_or_pacing_flag_that_means_nothing_exits_2(tmp_path, sent, flags, expected):
    started = time.monotonic()
    refused(["run", write(tmp_path), *flags], expected, sent)
    assert time.monotonic() - started < 5  # a huge --concurrency is refused, not built
    assert not (tmp_path / "out").exists()


def test_a_flag_typer_cannot_read_is_a_usage_error(tmp_path, sent):
    result = CliRunner().invoke(app, ["run", write(tmp_path), "--concurrency", "1e20"])
    assert result.exit_code == 2 and "Invalid value for '--concurrency'" in result.output
    assert sent == []


@pytest.mark.parametrize("interval", [1e300, 1.7e308])
def test_a_huge_interval_plans_as_more_than_100_days(tmp_path, sent, interval):
    # three paced starts of 1.7e308 s overflow to infinity
    manifest = write(tmp_path, pacing={"interval": interval},
                     prompts=[{"id": i, "prompt": f"shoe {i}"} for i in "abc"])
    result = CliRunner().invoke(app, ["plan", manifest])
    assert result.exit_code == 0, result.output
    assert re.search(r"estimated time\s+more than 100 days", result.stdout), result.stdout
    assert all(request.method == "GET" for request in sent)  # pre-flight only


def test_a_huge_concurrency_in_the_manifest_is_refused(tmp_path, sent):
    refused(["plan", write(tmp_path, pacing={"concurrency": 10**20})],
            "pacing.concurrency: must be <= 256", sent)


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_simulate_refuses_a_port_that_cannot_be(port):
    result = CliRunner().invoke(app, ["simulate", "--port", port])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--port'" in result.output


# -- files the manifest names ---------------------------------------------------------------

def _prompts_file(tmp_path, kind: str) -> str:
    target = tmp_path / "p.csv"
    if kind == "a folder":
        target.mkdir()
    elif kind == "a pipe":
        os.mkfifo(target)  # nobody writes to it: reading would wait for ever
    elif kind == "a device":
        target.symlink_to("/dev/null")
    elif kind == "a socket":
        with socket.socket(socket.AF_UNIX) as listener:  # the file stays when it closes
            listener.bind(str(target))
    return write(tmp_path, prompts=None, prompts_file="p.csv")


@pytest.mark.parametrize(("kind", "expected"), [
    ("a folder", "prompts file 'p.csv' is a folder, not a file"),
    ("a pipe", "prompts file 'p.csv' is a device or a pipe, not a file"),
    ("a device", "prompts file 'p.csv' is a device or a pipe, not a file"),
    ("a socket", "prompts file 'p.csv' is a socket, not a file"),
    ("missing", "prompts file 'p.csv' not found"),
])
def test_a_prompts_file_that_is_no_file_is_reported_as_what_it_is(tmp_path, sent, kind,
                                                                  expected):
    manifest = _prompts_file(tmp_path, kind)
    started = time.monotonic()
    refused(["plan", manifest], expected, sent)
    assert time.monotonic() - started < 5


CSV_CASES = {
    "a quote that never closes": ('id,prompt\na,fine\nb,"A blue shoe\nc,A red shoe\n'
                                  'd,A green shoe\n', 3, "unexpected end of data"),
    "a quote closed mid-cell": ('id,prompt\na,"A red shoe\nb,A blue shoe\nc,A "green" shoe\n'
                                'd,x\n', 2, "',' expected after '\"'"),
    "text after a closing quote": ('id,prompt\na,"quoted" then more\nb,x\n', 2,
                                   "',' expected after '\"'"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_a_stray_quote_in_a_csv_is_an_error_at_its_row_not_a_swallowed_file(tmp_path, sent,
                                                                           case):
    text, line, reason = CSV_CASES[case]
    (tmp_path / "p.csv").write_text(text)
    message = refused(["plan", write(tmp_path, prompts=None, prompts_file="p.csv")],
                      f"p.csv:{line}: malformed CSV in the row that starts here", sent)
    assert reason in message and 'write a quote inside a quoted cell as ""' in message


def test_quoted_cells_with_commas_and_line_breaks_still_read(tmp_path, sent):
    (tmp_path / "p.csv").write_text('id,prompt\na,"A shoe, red"\nb,"two\nlines"\nc,"a ""q"""\n')
    result = CliRunner().invoke(app, ["plan", write(tmp_path, prompts=None,
                                                    prompts_file="p.csv")])
    assert result.exit_code == 0, result.output
    assert re.search(r"prompts\s+3\b", result.stdout)


# libyaml refuses such an escape itself; the pure-Python loader builds the surrogate.
YAML_REFUSAL = r"m\.yaml:\d+: .*(unpaired surrogate|invalid Unicode character escape)"


@pytest.mark.parametrize(("where", "expected"), [
    ("yaml prompt", YAML_REFUSAL),
    ("yaml output", YAML_REFUSAL),
    ("jsonl prompt", "p.jsonl:1: prompt: holds an unpaired surrogate (\\ud800)"),
    ("jsonl key", "p.jsonl:1: holds an unpaired surrogate (\\udc00)"),
])
def test_an_unpaired_surrogate_is_refused_at_its_field(tmp_path, sent, where, expected):
    if where.startswith("yaml"):
        field = "prompt" if where == "yaml prompt" else "output"
        body = ('version: 1\nprompts:\n  - id: a\n    prompt: "x\\ud800y"\n' if field == "prompt"
                else 'version: 1\noutput: "out\\ud800"\nprompts:\n  - id: a\n    prompt: x\n')
        (tmp_path / "m.yaml").write_text(body)
        manifest = "m.yaml"
    else:
        line = ('{"id": "a", "prompt": "x\\ud800"}' if where == "jsonl prompt"
                else '{"id": "a", "prompt": "x", "\\udc00": 1}')
        (tmp_path / "p.jsonl").write_text(line + "\n")
        manifest = write(tmp_path, prompts=None, prompts_file="p.jsonl")
    if where.startswith("yaml"):
        assert re.match(f"error: {expected}", refused(["run", manifest], "", sent))
    else:
        assert "holds an unpaired surrogate" in refused(["run", manifest], expected, sent)
    assert not (tmp_path / "out").exists()


def test_emoji_written_as_escaped_surrogate_pairs_are_fine(tmp_path, sent):
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "a cat \\ud83d\\ude00"}\n')
    result = CliRunner().invoke(app, ["plan", write(tmp_path, prompts=None,
                                                    prompts_file="p.jsonl")])
    assert result.exit_code == 0, result.output


LONG = "a" * 5000


@pytest.mark.parametrize("args", [
    ["run", LONG], ["plan", LONG], ["status", LONG], ["status", LONG, "--json"],
    ["resume", LONG], ["run", "m.yaml", "--out", LONG], ["plan", "m.yaml", "--out", LONG],
    ["plan", "long-prompts-file.yaml"], ["plan", "long-reference.yaml"],
    ["plan", "long-output.yaml"],
], ids=lambda a: " ".join(x if len(x) < 20 else "LONG" for x in a))
def test_a_path_too_long_for_the_system_is_a_clear_error(tmp_path, sent, args):
    write(tmp_path)
    for name, extra in (("long-prompts-file.yaml", {"prompts": None,
                                                      "prompts_file": LONG + ".csv"}),
                        ("long-reference.yaml", {"prompts": [{"id": "a", "prompt": "x",
                                                               "images": [LONG + ".png"]}]}),
                        ("long-output.yaml", {"output": LONG})):
        doc = yaml.safe_load((tmp_path / "m.yaml").read_text())
        doc.update(extra)
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2, 75), result.output
    assert "Traceback" not in result.output and sent == []
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    if result.exit_code:
        assert result.stderr.startswith("error: ")
        assert "File name too long" in result.stderr or "not found" in result.stderr \
            or "no nbbatch run" in result.stderr


# -- what nbbatch keeps beside the run -------------------------------------------------------

def test_a_lock_file_that_is_a_pipe_is_refused_at_once(tmp_path, sent):
    manifest = write(tmp_path)
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out/.nbbatch.lock")
    started = time.monotonic()
    refused(["run", manifest], ".nbbatch.lock is a pipe, not a lock file", sent)
    assert time.monotonic() - started < 5


def test_status_beside_a_lock_file_that_is_a_pipe_does_not_hang(tmp_path):
    manifest = write(tmp_path, defaults={"provider": "simulator"}, providers={"simulator": {}})
    assert CliRunner().invoke(app, ["run", manifest, "--quiet"]).exit_code == 0
    lock = tmp_path / "out/.nbbatch.lock"
    lock.unlink()
    os.mkfifo(lock)  # nobody writes to it: opening it to read would wait for ever
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status", "out"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"CWD": 5}', b'{"CWD": [1]}',
                                     b"\xff\xfe",
                                     b'{"' + b"[" * 100000 + b'"}', "a pipe"])
def test_a_damaged_recent_runs_file_is_ignored(tmp_path, content, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    registry = state / "recent-runs.json"
    if content == "a pipe":
        os.mkfifo(registry)
    else:
        registry.write_bytes(content.replace(b"CWD", str(tmp_path).encode()))
    monkeypatch.setenv("NBBATCH_STATE_DIR", str(state))
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2 and "no run was started from this directory" in result.stderr
    manifest = write(tmp_path, defaults={"provider": "simulator"},
                     providers={"simulator": {}})
    assert CliRunner().invoke(app, ["run", manifest, "--quiet"]).exit_code == 0
    assert CliRunner().invoke(app, ["status"]).exit_code == 0  # remembered anew
