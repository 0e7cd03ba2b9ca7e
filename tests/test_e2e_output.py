"""What reaches the terminal, end to end: text from outside stays text, a failed output never
changes what a run does, and widths from the environment cannot empty or flood it."""

from __future__ import annotations

import io
import subprocess

import pytest
from rich.console import Console

from nbbatch.cli.tables import status_table
from nbbatch.engine.status import ShownImage
from nbbatch.store.records import ImageRow
from tests.e2e_helpers import env, ledger_rows, nbbatch_cmd, run_cli, write_manifest
from tests.test_reliability import HostileServer, answer

pytestmark = pytest.mark.e2e

HOSTILE = "bad [/] [red]value[/red] \x1b]0;pwned\x07\x1b[2J\x1b[31m"


def refuses_with_hostile_text(handler, server):
    answer(handler, 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                    "message": HOSTILE}})


def simulator_manifest(tmp_path, n=6, latency="0.05"):
    return write_manifest(tmp_path / "m.yaml", [f"p{i}" for i in range(n)],
                          base_url="http://unused.invalid", interval="0",
                          defaults={"provider": "simulator", "model": "gemini-3-pro-image"},
                          providers={"simulator": {"latency": latency}})


def test_server_text_with_markup_and_escapes_is_shown_as_text_everywhere(tmp_path):
    with HostileServer(refuses_with_hostile_text) as server:
        manifest = write_manifest(tmp_path / "m.yaml", ["one", "two"], base_url=server.url)
        result = run_cli(tmp_path, "run", manifest)
    assert result.returncode == 3, result.stderr  # failed images, not a crash
    status = run_cli(tmp_path, "status", "out")
    assert status.returncode == 0, status.stderr
    for text in (result.stdout, result.stderr, status.stdout):
        assert "\x1b" not in text and "Traceback" not in text
    assert "bad [/] [red]value[/red] \\x1b]0;pwned\\x07\\x1b[2J" in status.stdout
    assert "[/]" in result.stdout  # the failed items are listed after the run, as text
    # Stored as the server said it: only showing makes it inert.
    assert all("\x1b" in row["error_message"] for row in ledger_rows(tmp_path / "out"))


def test_a_terminal_table_shows_markup_as_text():
    row = ImageRow("x[/]", 1, "f", "failed", "gemini", "m", 1, None, None, None, None,
                   "invalid", "[bold]loud[/bold] \x1b[2J", 0, None, None)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=120).print(
        status_table([ShownImage(row, "failed", f"invalid: {row.error_message}")]))
    shown = out.getvalue()
    assert "x[/]" in shown and "[bold]loud[/bold]" in shown and "\\x1b[2J" in shown


def test_a_path_with_markup_keeps_every_character(tmp_path):
    result = run_cli(tmp_path, "run", simulator_manifest(tmp_path, 1), "--out", "o[red]ut",
                     key=None)
    assert result.returncode == 0, result.stderr
    assert "o[red]ut" in result.stdout


def test_a_reader_that_stops_early_changes_nothing_the_run_does(tmp_path):
    manifest = simulator_manifest(tmp_path, 12)
    run = subprocess.Popen(nbbatch_cmd("run", manifest), cwd=tmp_path, env=env(tmp_path, None),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout is not None
    run.stdout.readline()  # like `nbbatch run | head -1`
    run.stdout.close()
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert err.decode() == ""  # no "Task exception was never retrieved", no BrokenPipeError
    rows = ledger_rows(tmp_path / "out")
    assert [r["status"] for r in rows] == ["done"] * 12
    assert all(r["attempts"] == 1 for r in rows)  # nothing paid twice


def test_a_full_log_disk_is_reported_and_the_run_is_unchanged(tmp_path):
    manifest = simulator_manifest(tmp_path, 4)
    with open("/dev/full", "w") as full:
        run = subprocess.run(nbbatch_cmd("run", manifest), cwd=tmp_path,
                             env=env(tmp_path, None), stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "the output could not be written (No space left on device)" in run.stderr
    assert "ended with exit 0" in run.stderr and "Traceback" not in run.stderr
    assert [r["status"] for r in ledger_rows(tmp_path / "out")] == ["done"] * 4


def test_status_and_plan_to_a_full_disk_say_so_and_a_closed_pipe_is_quiet(tmp_path):
    manifest = simulator_manifest(tmp_path, 3)
    assert run_cli(tmp_path, "run", manifest, key=None).returncode == 0
    for args in (("status", "out"), ("status", "out", "--json"), ("plan", manifest, "--offline"),
                 ("--version",)):
        with open("/dev/full", "w") as full:
            done = subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, env=env(tmp_path, None),
                                  stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        assert done.returncode == 74, done.stderr
        assert done.stderr.strip() == "error: cannot write the output: No space left on device"
    head = subprocess.run(f"{subprocess.list2cmdline(nbbatch_cmd('status', 'out'))} | head -1",
                          shell=True, cwd=tmp_path, env=env(tmp_path, None),
                          capture_output=True, text=True, timeout=60)
    assert head.stderr == "" and head.stdout.startswith("last run:")


def test_any_columns_value_gives_readable_bounded_output(tmp_path):
    def nbbatch(columns, *args):
        return subprocess.run(nbbatch_cmd(*args), cwd=tmp_path, capture_output=True,
                              env={**env(tmp_path, None), "COLUMNS": columns}, timeout=60)

    for columns in ("0", "junk"):  # COLUMNS=0 used to print every message empty
        error = nbbatch(columns, "run", "nowhere.yaml")
        assert error.returncode == 2 and b"nowhere.yaml" in error.stderr, columns
    for columns in ("0", "100000000"):  # the second used to write 1.2 GB of help
        helped = nbbatch(columns, "run", "--help")
        assert helped.returncode == 0 and b"--out" in helped.stdout, columns
        assert len(helped.stdout) < 200_000
