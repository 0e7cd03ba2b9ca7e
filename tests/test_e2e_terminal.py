"""The README's failover example, run as written on real terminals (tmux panes of 80, 120 and
40 columns): the live display fits each width with the counts and the ETA always there, the
switch and the recovery happen as the README shows, and the end of the screen is what the
README prints."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WIDTHS = (80, 120, 40)
LIVE = re.compile(r"\d+ done · \d+ failed · \d+ pending of 16")


def readme_block(after: str, language: str = "") -> str:
    """The first fenced block that follows the line `after` in the README."""
    start = README.index(after)
    match = re.search(rf"```{language}\n(.*?)```", README[start:], re.S)
    assert match, after
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"nbbatch-test-{os.getpid()}-{tmp_path.name}"[:90]
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "NBBATCH_STATE_DIR": str(tmp_path / "state")}
        for name in ("GEMINI_API_KEY", "OPENAI_API_KEY", "COLUMNS", "LINES"):
            self.env.pop(name, None)

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, text=True,
                              capture_output=True, timeout=30).stdout

    def start(self, name: str, width: int, command: str, cwd: Path) -> None:
        self("new-session", "-d", "-s", name, "-x", str(width), "-y", "40", "-c", str(cwd),
             f"{command}; echo EXIT=$?; sleep 300")

    def screen(self, name: str) -> list[str]:
        return [line.rstrip() for line in self("capture-pane", "-p", "-J", "-t", name)
                .splitlines() if line.strip()]

    def close(self) -> None:
        self("kill-server")


def test_the_failover_example_on_80_120_and_40_columns(tmp_path):
    port = free_port()
    command = readme_block("Worked example, offline", "bash").strip().replace("8765", str(port))
    assert command.count("\n") == 0 and "nbbatch run samples/failover.yaml" in command
    (tmp_path / "samples").mkdir()
    manifest = (ROOT / "samples/failover.yaml").read_text().replace("8765", str(port))
    (tmp_path / "samples/failover.yaml").write_text(manifest)
    tmux = Tmux(tmp_path)
    frames: dict[int, list[list[str]]] = {width: [] for width in WIDTHS}
    try:
        tmux.start("w80", 80, command, tmp_path)  # the README's line, as written
        _wait_for_port(port)
        for width in WIDTHS[1:]:
            tmux.start(f"w{width}", width, "GEMINI_API_KEY=x OPENAI_API_KEY=x nbbatch run "
                       f"samples/failover.yaml --out w{width}", tmp_path)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for width in WIDTHS:
                frames[width].append(tmux.screen(f"w{width}"))
            if all(any(line.startswith("EXIT=") for line in f[-1]) for f in frames.values()):
                break
            time.sleep(0.25)
    finally:
        tmux.close()
        _stop_simulator(port)
    for width in WIDTHS:
        final = frames[width][-1]
        assert "EXIT=0" in final, final
        live = [frame for frame in frames[width] if any(LIVE.search(line) for line in frame)
                and not any(" made in " in line for line in frame)]  # before the summary
        assert live, f"no live display seen at {width} columns"
        for frame in live:
            view = frame[next(i for i, line in enumerate(frame) if LIVE.search(line)
                              or line.startswith("━")):]
            assert all(len(line) <= width for line in view), (width, view)  # nothing wraps
            assert any("ETA " in line for line in view), (width, view)
        assert any("gemini: switched away ·" in line for frame in live for line in frame)
    _matches_the_readme(frames[80][-1], port)
    _a_frame_looks_like_the_readme(frames[80])


def _matches_the_readme(final: list[str], port: int) -> None:
    shown = readme_block("At the end, the terminal shows").replace("8765", str(port))
    shown = shown.strip().splitlines()
    patterns = [re.compile(re.escape(line).replace("…", ".*") + "$") for line in shown]
    text = [line for line in final if not line.startswith("EXIT=")]
    assert len(text) == len(patterns), text
    for line, pattern in zip(text, patterns, strict=True):
        assert pattern.match(line), (line, pattern.pattern)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the simulator did not start")


def _stop_simulator(port: int) -> None:
    """The README's line leaves its simulator running in the background: stop that one."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simulate" in cmdline and str(port).encode() in cmdline:
            os.kill(int(proc.name), signal.SIGTERM)


def _a_frame_looks_like_the_readme(frames: list[list[str]]) -> None:
    """The README's picture of the running display, its figures left open."""
    bar_line, states = readme_block("While it runs, on an 80-column terminal").strip() \
        .splitlines()[-2:]
    figures = re.sub(r"\d+", r"\\d+", re.escape(bar_line.lstrip("━ ")))
    first = re.compile(r"━+ " + figures + "$")
    second = states.split(" · openai: ")[0] + " · openai: "
    assert any(len(frame) >= 2 and first.match(frame[-2]) and frame[-1].startswith(second)
               for frame in frames), (bar_line, states)
