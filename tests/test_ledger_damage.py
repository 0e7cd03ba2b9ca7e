"""A ledger that is damaged, partly unreadable, read-only or planted with links: every
command says what is wrong and what to do, with its documented exit code, never a traceback,
and nothing is written outside the output folder."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nbbatch.cli import app

N = 60  # enough rows for the images table to span many pages


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of N images on the in-process simulator, made once for the module."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "p.csv").write_text("id,prompt\n" + "".join(
        f"img{i},prompt {i} with a few more words to fill the page {'x' * 200}\n"
        for i in range(N)))
    manifest = folder / "m.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "defaults": {"provider": "simulator"},
        "pacing": {"interval": 0, "concurrency": 16}, "prompts_file": "p.csv"}))
    old = Path.cwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(app, ["run", str(manifest), "--quiet"])
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def done_run(finished, tmp_path, monkeypatch):
    """A copy of the finished run in tmp_path, the working directory; returns the manifest."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "m.yaml"


COMMANDS = [["status", "out"], ["status", "out", "--json"], ["plan", "m.yaml"],
            ["run", "m.yaml"], ["resume", "out"]]


def invoke(args):
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_garbage_page_in_the_middle_of_the_ledger_is_reported_not_a_traceback(
        done_run, tmp_path, args):
    ledger = tmp_path / "out/ledger.db"
    with sqlite3.connect(ledger) as db:  # a page in the middle of the images table
        pages = [n for (n,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'images'"
                                          " AND pagetype = 'leaf' ORDER BY pageno")]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(ledger, "r+b") as f:
        f.seek(page_size * (pages[len(pages) // 2] - 1))
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert f"the ledger {ledger} is damaged" in result.stderr
    assert "restore it from a backup, or move it away" in result.stderr


def _damage(ledger: Path, sql: str) -> None:
    with sqlite3.connect(ledger) as db:
        db.execute(sql)
    db.close()


DAMAGE = {
    "a message that is not UTF-8": "UPDATE images SET error_kind = 'x', error_message ="
                                   " CAST(X'C3284E6F' AS TEXT), status = 'failed'"
                                   " WHERE id = 'img1'",
    "an id that is not UTF-8": "UPDATE items SET prompt = CAST(X'FFFE41' AS TEXT)",
    "usage that is not JSON": "UPDATE images SET usage = '{\"tokens\": 12' WHERE id = 'img2'",
    "usage that is JSON but no mapping": "UPDATE images SET usage = '[1, 2]'",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_sqlite_cannot_see_inside_a_record_does_not_stop_status_or_a_run(
        done_run, tmp_path, damage):
    _damage(tmp_path / "out/ledger.db", DAMAGE[damage])
    for args in (["status", "out"], ["status", "out", "--json"], ["plan", "m.yaml"]):
        assert invoke(args).exit_code == 0
    assert invoke(["run", "m.yaml"]).exit_code in (0, 3)


@pytest.mark.parametrize(("sql", "expected"), [
    ("UPDATE runs SET options = '{not json'", "damaged record of the last run's options"),
    ("UPDATE items SET refs = '[[\"a.png\"' WHERE id = 'img3'",
     "the ledger's record of item 'img3' is damaged"),
])
def test_resume_from_a_damaged_run_record_asks_for_the_manifest(done_run, tmp_path, sql,
                                                                 expected):
    _damage(tmp_path / "out/ledger.db", sql)
    result = invoke(["resume", "out"])
    assert result.exit_code == 2 and expected in result.stderr
    assert "use nbbatch run MANIFEST" in result.stderr


# -- links and special files where the ledger's files belong -------------------------------

@pytest.mark.parametrize("name", ["ledger.db", "ledger.db-wal", "ledger.db-shm",
                                  "ledger.db-journal"])
def test_a_ledger_file_planted_as_a_link_is_refused_and_its_target_untouched(
        done_run, tmp_path, name):
    out, precious = tmp_path / "out", tmp_path / "precious"
    target = out / name
    if target.exists():
        shutil.move(target, precious)
    else:
        precious.write_bytes(b"do not touch")
    before = precious.read_bytes()
    target.symlink_to(precious)
    result = invoke(["run", "m.yaml"])
    assert result.exit_code == 2, result.output
    assert f"{target} is a symbolic link" in result.stderr
    assert precious.read_bytes() == before


def test_a_pipe_where_the_write_ahead_log_belongs_is_refused(done_run, tmp_path):
    wal = tmp_path / "out/ledger.db-wal"
    wal.unlink(missing_ok=True)  # an empty one a reader (the gallery) may leave
    os.mkfifo(wal)
    result = invoke(["run", "m.yaml"])
    assert result.exit_code == 2 and "ledger.db-wal is a pipe, not a file" in result.stderr


def test_a_ledger_that_is_a_folder_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out/ledger.db").mkdir(parents=True)
    result = invoke(["status", "out"])
    assert result.exit_code == 2 and "ledger.db is a folder, not an nbbatch ledger" in result.stderr


# -- read-only and unreadable folders --------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A folder another user can reach (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="nbbatch-ro-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(path)


def as_reader(folder: Path, *args) -> subprocess.CompletedProcess:
    """The CLI run by a user who may read `folder` but not write it: nobody when we are root
    (root writes anywhere), else ourselves with the write bits removed."""
    cmd = [sys.executable, "-m", "nbbatch", *map(str, args)]
    env = {**os.environ, "NBBATCH_STATE_DIR": str(folder / "state"), "HOME": str(folder)}
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to drop root")
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def _read_only_run(shared_dir: Path, monkeypatch) -> Path:
    manifest = shared_dir / "m.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "defaults": {"provider": "simulator"},
        "pacing": {"interval": 0}, "prompts": [{"id": "a", "prompt": "a"}, {"id": "b",
                                                                             "prompt": "b"}]}))
    with monkeypatch.context() as m:
        m.chdir(shared_dir)
        assert CliRunner().invoke(app, ["run", str(manifest), "--quiet"]).exit_code == 0
    out = shared_dir / "out"
    for path in (out, *out.rglob("*")):
        path.chmod(0o555 if path.is_dir() else 0o444)
    return manifest


def test_reading_commands_work_on_a_folder_the_user_cannot_write(shared_dir, monkeypatch):
    _read_only_run(shared_dir, monkeypatch)
    before = sorted(p.name for p in (shared_dir / "out").iterdir())
    for args, shows in ((["status", "out", "--json"], '"done": 2'),
                        (["plan", "m.yaml"], "already done")):
        result = as_reader(shared_dir, *args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and shows in result.stdout
    assert sorted(p.name for p in (shared_dir / "out").iterdir()) == before  # nothing written


def test_reading_a_folder_the_user_cannot_enter_is_a_clear_error(shared_dir, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("the owner can always read its own folder")
    _read_only_run(shared_dir, monkeypatch)
    (shared_dir / "out").chmod(0o700)
    result = as_reader(shared_dir, "plan", "m.yaml")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot read the ledger" in result.stderr and "Permission denied" in result.stderr
