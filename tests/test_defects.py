"""A defect in nbbatch itself (an exception no answer explains) stops the run cleanly: the
image stays pending with the defect named by type and line - never by its message, which
may hold anything - other images are kept, and the exit is 70, in the engine and the CLI."""

from __future__ import annotations

import asyncio
import logging

from typer.testing import CliRunner

import nbbatch.engine.status
from nbbatch.cli.app import app
from nbbatch.errors import ExitCode, describe_defect
from tests.test_runner import ScriptedProvider, manifest, run

SECRET = "AIzaSyD-secret-in-an-exception-message-0123"


def test_a_defect_inside_an_image_job_stops_the_run_and_keeps_every_image(
        tmp_path, clock, caplog):
    m = manifest(tmp_path, ["a", "b", "c", "d"], concurrency=1, interval=1)
    provider = ScriptedProvider(clock, latency=1, script={"b": [KeyError(SECRET)]})
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        summary, ledger, _ = run(tmp_path, m, provider, clock)
    assert summary.exit_code == ExitCode.SOFTWARE
    rows = {r.id: r for r in ledger.rows()}
    assert rows["p0"].status == "done"
    assert [rows[i].status for i in ("p1", "p2", "p3")] == ["pending"] * 3
    assert rows["p1"].error_kind == "internal"
    assert "KeyError at nbbatch/" in rows["p1"].error_message
    assert SECRET not in rows["p1"].error_message and SECRET not in summary.stop_reason
    assert [p for _, p in provider.starts] == ["a", "b"]  # nothing more was sent
    assert "never retrieved" not in caplog.text


def test_a_defect_is_named_by_its_type_and_the_line_of_nbbatch_that_raised_it():
    async def failing():
        await asyncio.sleep(0)
        nbbatch.engine.status.json.loads("{")  # raises inside the standard library

    try:
        asyncio.run(failing())
    except ValueError as exc:
        text = describe_defect(exc)
    assert text.startswith("JSONDecodeError") and "{" not in text
    assert " at nbbatch/" not in text  # no frame of nbbatch's raised it: none is named


def test_a_defect_in_a_command_exits_70_naming_it_and_never_its_message(
        tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr("nbbatch.cli.status_view.show_status", broken)
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, ["status", str(tmp_path / "out")])
    assert result.exit_code == ExitCode.SOFTWARE
    assert "internal error (RuntimeError at nbbatch/" in result.output
    assert SECRET not in result.output
    monkeypatch.setenv("NBBATCH_DEBUG", "1")
    debug = CliRunner().invoke(app, ["status", str(tmp_path / "out")])
    assert isinstance(debug.exception, RuntimeError)  # the traceback, when asked for
