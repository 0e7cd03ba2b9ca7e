"""How a run stops: at --max-duration whatever its jobs wait for, on SIGHUP like on SIGTERM,
and on a full disk (lock file, output folder, ledger) with exit 75 and its summary."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import nbbatch.store.lock
import nbbatch.store.view
from benchmarks.chaos import check_final, inspect_output
from nbbatch.cli import app
from nbbatch.engine.budget import Budget
from nbbatch.errors import ExitCode, TransientError
from nbbatch.store.ledger import Ledger
from tests.e2e_helpers import (
    configure,
    done_ids,
    ledger_rows,
    requests_log,
    run_cli,
    start_cli,
    wait_until,
    write_manifest,
)
from tests.test_runner import ScriptedProvider, manifest, run

# -- --max-duration ------------------------------------------------------------------------

WAITS = {
    "server pauses": lambda: TransientError("429", status=429, retry_after=60, overload=True),
    "backoff": lambda: TransientError("503", status=503, overload=True),
}


@pytest.mark.parametrize("wait", list(WAITS))
def test_max_duration_holds_while_every_job_waits(tmp_path, clock, wait):
    m = manifest(tmp_path, [f"p{i}" for i in range(6)], concurrency=2, interval=0.5,
                 attempts=20)
    provider = ScriptedProvider(clock, latency=0.5,
                                script={f"p{i}": [WAITS[wait]()] * 30 for i in range(6)})
    started = clock.now
    summary, _, _ = run(tmp_path, m, provider, clock, Budget(max_duration=3))
    assert summary.exit_code == ExitCode.TEMPFAIL
    assert "--max-duration reached (3 s)" in summary.stop_reason
    assert all(t < started + 3 for t, _ in provider.starts), "a request went out after it"
    assert clock.now - started < 3 + 0.5 + 1e-9  # at most the request then on its way


# -- a full disk -------------------------------------------------------------------------

def simulator_manifest(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "defaults": {"provider": "simulator"},
        "pacing": {"interval": 0, "concurrency": 2},
        "prompts": [{"id": f"img{i}", "prompt": f"full disk {i}"} for i in range(n)]}))
    return path


class NoSpaceOnWrite:
    """A module's view of `os` in which writing into a file fails: the disk is full."""

    def __getattr__(self, name):
        return getattr(os, name)

    def pwrite(self, fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_the_lock_file_is_exit_75_with_a_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nbbatch.store.lock, "os", NoSpaceOnWrite())
    result = CliRunner().invoke(app, ["run", str(simulator_manifest(tmp_path, 2))])
    assert result.exit_code == 75, result.output
    assert "cannot write the lock file" in result.stderr and "(the disk is full)" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_full_disk_for_a_new_output_folder_is_exit_75(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "out":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = CliRunner().invoke(app, ["run", str(simulator_manifest(tmp_path, 2))])
    assert result.exit_code == 75, result.output
    assert "cannot create the output folder" in result.stderr and "disk is full" in result.stderr


class FillingDisk:
    """A ledger connection on a disk that fills up: once `full`, every write fails as
    SQLite reports it, the run's closing record included."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN", "REPLACE")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn, self.full = conn, False

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        if self.full and sql.lstrip().upper().startswith(self.WRITES):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)


def test_a_ledger_that_fills_the_disk_mid_run_stops_with_the_summary_and_exit_75(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_connect, real_mark_done = nbbatch.store.view.connect, Ledger.mark_done
    disks: list[FillingDisk] = []

    def connect(path, *, read_only):
        conn = real_connect(path, read_only=read_only)
        if read_only:
            return conn
        disks.append(FillingDisk(conn))
        return disks[-1]

    def mark_done(self, key):
        real_mark_done(self, key)
        if int(key[0][3:]) >= 10:  # from the eleventh image or so, the disk is full
            disks[-1].full = True

    monkeypatch.setattr(nbbatch.store.view, "connect", connect)
    monkeypatch.setattr(Ledger, "mark_done", mark_done)
    manifest_path = simulator_manifest(tmp_path, 100)
    result = CliRunner().invoke(app, ["run", str(manifest_path)])
    assert result.exit_code == 75, result.output
    assert "the ledger cannot be written" in result.output and "disk is full" in result.output
    assert "pending of 100" in result.output  # the summary
    assert "Task exception was never retrieved" not in result.output
    snap = inspect_output(tmp_path / "out")  # consistent: every file is the ledger's
    assert 0 < len(snap.done) < 100

    monkeypatch.undo()  # space again: the next run finishes the batch
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["run", str(manifest_path)]).exit_code == 0
    check_final(tmp_path / "out", 100)


# -- SIGHUP ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_sighup_stops_like_sigterm_exit_129_with_summary_and_the_run_closed(tmp_path):
    from nbbatch.sim import SimulatorOptions, SimulatorServer
    from tests.e2e_helpers import KEY

    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=3)) as sim:
        configure(sim.url, latency=[0.05, 0.05])
        n = 20
        manifest_path = write_manifest(tmp_path / "m.yaml", [f"hup {i}" for i in range(n)],
                                       base_url=sim.url, concurrency=2, interval="0.05")
        out = tmp_path / "out"
        proc = start_cli(tmp_path, "run", manifest_path)
        assert wait_until(lambda: (out / "ledger.db").exists() and len(done_ids(out)) >= 2)
        configure(sim.url, latency=[5, 5])  # what goes out from now on stays in flight
        sent = len(requests_log(sim.url))
        assert wait_until(lambda: len(requests_log(sim.url)) > sent)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(10) == 129
        log = (tmp_path / "cli.log").read_text()
        assert "interrupted by SIGHUP" in log and f"pending of {n}" in log  # the summary
        with sqlite3.connect(out / "ledger.db") as db:
            closed = db.execute("SELECT exit_code, finished_at FROM runs").fetchall()
            outcomes = {o for (o,) in db.execute("SELECT outcome FROM attempts")}
        assert closed[-1][0] == 129 and closed[-1][1] is not None
        assert "interrupted" in outcomes  # the request in flight, possibly billed
        assert {r["status"] for r in ledger_rows(out)} <= {"done", "pending"}

        configure(sim.url, latency=[0, 0])
        assert run_cli(tmp_path, "resume").returncode == 0
        check_final(out, n)
