"""Every command block of the README, run as written in a copy of `samples/`, and the output
blocks that follow them compared line by line (`…` stands for what changes between runs).

A block only changes where it cannot run here, and each change is named: ports become free
ones, waits of 20 s become 2 s, `/srv/catalog` and `~/.gemini-key` become the test's folder
and a key, and `nbbatch` is this environment's. The failover example is run on terminals by
`test_e2e_terminal.py`; `test_every_command_block_is_checked` fails for a new block nobody
runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in
          re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)]
BIN = Path(sys.executable).parent
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e . && "

# The first line of each command block -> the test that runs it.
CHECKED = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e . &&": "test_quick_start",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' &&": "test_test_command",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'": "test_test_command",
    "nbbatch simulate --port 8765 --outage 0-6": "test_e2e_terminal",
    "nbbatch run prompts.yaml --max-cost": "test_budget_and_cron_lines",
    "30 1 * * *": "test_budget_and_cron_lines",
    "# Every night at 01:30": "test_budget_and_cron_lines",
    "nbbatch plan samples/batch.yaml": "test_batch_example",
    "nbbatch simulate --port 8766": "test_batch_server_example",
    "nbbatch gallery samples/out/sample --open": "test_quick_start",
    "nbbatch simulate --port 8765 --latency 1-3": "test_simulate_line",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def block(starting: str) -> str:
    (text,) = [t for _, t in BLOCKS if t.startswith(starting)]
    return text


def output_after(command: str) -> list[str]:
    """The lines of the plain block that follows the command block starting `command`."""
    start = README.index("\n```\n", README.index(command)) + 5  # past the command's block
    match = re.search(r"^```\n(.*?)^```", README[start:], re.S | re.M)
    assert match, command
    return match.group(1).splitlines()


def assert_shown(readme_lines: list[str], output: str) -> None:
    """Each README line matches a line of the output, in order; `…` matches anything."""
    lines = iter(output.splitlines())
    for shown in readme_lines:
        pattern = re.compile(".*?".join(map(re.escape, shown.split("…"))) + "$")
        assert any(pattern.match(line) for line in lines), (shown, output)


def shell(script: str, cwd: Path, tmp_path: Path, timeout: float = 120,
          **extra: str) -> subprocess.CompletedProcess:
    environment = {**env(tmp_path, key=None), **extra,
                   "PATH": f"{BIN}:{os.environ['PATH']}", "BROWSER": str(tmp_path / "browser")}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=environment, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of what a user's clone holds for the examples, its .venv this environment's."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "samples", root / "samples",
                    ignore=shutil.ignore_patterns("out"))
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(BIN)
    browser = tmp_path / "browser"  # $BROWSER: records what it was asked to open
    browser.write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/opened\n')
    browser.chmod(0o755)
    return root


def test_every_command_block_is_checked():
    commands = [t for lang, t in BLOCKS if lang in ("bash", "cron")]
    unchecked = [t for t in commands if not any(t.startswith(k) for k in CHECKED)]
    assert unchecked == []
    assert all(any(t.startswith(k) for t in commands) for k in CHECKED)  # none stale


def test_quick_start(repo, tmp_path):
    command = block(INSTALL)
    assert command.count("\n") == 1
    # The install itself is what this environment did; the rest runs as written, no key.
    result = shell(command[len(INSTALL):], repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 done · 0 failed · 0 pending" in result.stdout
    out = repo / "samples/out/sample"
    for name in ("images/red-sneaker.jpg", "images/fox-icon-1.jpg", "ledger.db"):
        assert (out / name).is_file(), name
    resume = shell(".venv/bin/nbbatch resume", repo, tmp_path)  # "finishes the job"
    assert resume.returncode == 0, resume.stdout + resume.stderr
    gallery = shell(block("nbbatch gallery samples/out/sample --open"), repo, tmp_path)
    assert gallery.returncode == 0, gallery.stderr
    page = (out / "gallery.html").resolve()
    assert gallery.stdout.strip() == str(page)
    assert (tmp_path / "opened").read_text().split() == [page.as_uri()]


def test_test_command():
    # This suite is that command; CI runs the same line.
    for start in ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'",
                  "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"):
        assert "python -m pytest -q -n 2" in block(start)
    assert "python -m pytest -q -n 2" in (ROOT / ".ci/run").read_text()


def test_the_manifest_examples_are_valid(repo, tmp_path):
    folder = repo / "catalog"
    (folder / "refs").mkdir(parents=True)
    shutil.copy(ROOT / "docs/gallery.png", folder / "refs/sneaker.png")
    (folder / "more-prompts.csv").write_text("id,prompt\nextra,A green sneaker\n")
    (folder / "prompts.yaml").write_text(block("version: 1\noutput: out/catalog"))
    prompts = "prompts: [{id: a, prompt: a kite}]\n"
    (folder / "failover.yaml").write_text("version: 1\n" + block("defaults: {provider: gemini")
                                          + prompts)
    (folder / "batch.yaml").write_text("version: 1\n" + block("mode: batch") + prompts)
    for name, says in [("prompts.yaml", "to generate     6"), ("failover.yaml", "$0.13"),
                       ("batch.yaml", "$0.07 at the batch price (online: $0.13)")]:
        result = shell(f"nbbatch plan {name} --offline", folder, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert says in result.stdout, name


def test_the_status_document_has_the_readme_fields(repo, tmp_path):
    assert shell(block(INSTALL)[len(INSTALL):], repo, tmp_path).returncode == 0
    doc = json.loads(shell("nbbatch status samples/out/sample --json", repo,
                           tmp_path).stdout)
    shown = json.loads(block('{\n  "out"'))
    assert list(shown) == list(doc)
    assert list(shown["items"][0]) == list(doc["items"][0])


def test_budget_and_cron_lines(repo, tmp_path):
    """The README's manifest against the simulator as Gemini: the budget line and both cron
    lines' commands, with /srv/catalog this folder and the key file a key."""
    with SimulatorServer(SimulatorOptions(batch_duration=0.2)) as sim:
        text = block("version: 1\noutput: out/catalog").replace(
            "https://generativelanguage.googleapis.com", sim.url).replace("5-10", "0.05")
        doc = yaml.safe_load(text)
        doc.pop("prompts_file")
        doc["prompts"] = [p for p in doc["prompts"] if "images" not in p]
        (repo / "prompts.yaml").write_text(yaml.safe_dump(doc))
        budget = shell(block("nbbatch run prompts.yaml --max-cost"), repo, tmp_path,
                       GEMINI_API_KEY="x")
        assert budget.returncode == 0, budget.stdout + budget.stderr
        assert "4 done · 0 failed · 0 pending of 4" in budget.stdout
        for start, code in [("# Every night at 01:30", 0), ("30 1 * * *", 75)]:
            line = block(start).splitlines()[-1].split("  ", 1)[1]
            line = (line.replace("cd /srv/catalog", f"cd {repo}")
                    .replace("$(cat ~/.gemini-key)", "x")
                    .replace("/srv/catalog/.venv/bin/nbbatch", "nbbatch"))
            if code == 75:  # a batch run after the online one: ask for new images
                (repo / "prompts.yaml").write_text(yaml.safe_dump(
                    {**doc, "prompts": [{"id": "night", "prompt": "a night sky"}]}))
            result = shell(line, repo, tmp_path)
            assert result.returncode == code, (line, (repo / "nbbatch.log").read_text())
            log = (repo / "nbbatch.log").read_text().splitlines()
            assert log and all(re.match(r"\d{4}-\d\d-\d\dT", entry) for entry in log)


def test_batch_example(repo, tmp_path):
    result = shell(block("nbbatch plan samples/batch.yaml"), repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # the last line: status
    assert "estimated cost  $0.00 at the batch price (online: $0.00)" in result.stdout
    assert "3 done · 1 failed · 0 pending" in result.stdout
    assert_shown(output_after("nbbatch plan samples/batch.yaml"), result.stdout)


def test_batch_server_example(repo, tmp_path):
    port = str(free_port())
    script = (block("nbbatch simulate --port 8766").replace("8766", port)
              .replace("--batch-duration 20", "--batch-duration 2")
              .replace("sleep 20", "sleep 2"))
    manifest = repo / "samples/batch-server.yaml"
    manifest.write_text(manifest.read_text().replace("8766", port))
    marked = script.replace("# submits; exit 75", "; echo EXIT=$?").replace(
        "# collects; exit 0", "; echo EXIT=$?")
    result = shell(marked, repo, tmp_path)
    assert re.findall(r"EXIT=(\d+)", result.stdout) == ["75", "0"], result.stdout
    assert_shown(output_after("nbbatch simulate --port 8766"),
                 result.stdout + result.stderr)


def test_simulate_line(tmp_path):
    port = str(free_port())
    line = block("nbbatch simulate --port 8765 --latency 1-3").splitlines()[0]
    environment = {**env(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}"}
    with subprocess.Popen(["bash", "-c", "exec " + line.replace("8765", port)],
                          env=environment, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert f"listening on http://127.0.0.1:{port}" in server.stdout.readline()
        finally:
            server.terminate()
            server.wait(10)
