"""Output that cannot hurt: text shown inert, widths from the environment bounded, and
streams whose failure ends output quietly instead of breaking the caller."""

from __future__ import annotations

import errno
import os

import pytest
from typer.testing import CliRunner

from nbbatch.cli.console import MAX_WIDTH, MIN_WIDTH, GuardedStream, check_width_variables
from nbbatch.text import printable

# -- printable ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear the screen
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: set the window title
    ("\x9b31m", "\\x9b31m"),  # a one-byte CSI
    ("done\rfailed", "done\\x0dfailed"),  # a carriage return overwriting the line
    ("line\nfake line", "line\\x0afake line"),
    ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
    ("[red]x[/] café ✓ 日本", "[red]x[/] café ✓ 日本"),  # text stays text, markup too
])  # fmt: skip
def test_printable_makes_every_active_character_visible_and_inert(raw, shown):
    assert printable(raw) == shown


# -- terminal width ---------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "kept"), [
    ("0", str(MIN_WIDTH)), ("3", str(MIN_WIDTH)), ("80", "80"), ("100000000", str(MAX_WIDTH)),
    ("wide", None), ("", None), ("-5", None),
])  # fmt: skip
def test_width_variables_are_kept_within_bounds(given, kept):
    env = {"COLUMNS": given, "TERMINAL_WIDTH": given}
    check_width_variables(env)
    assert env.get("COLUMNS") == kept and env.get("TERMINAL_WIDTH") == kept


# -- guarded streams ---------------------------------------------------------------------------


def test_a_closed_pipe_ends_output_quietly():
    read, write = os.pipe()
    os.close(read)
    stream = GuardedStream(write)
    try:
        stream.write("x" * 100_000)  # past the buffer: written, and the pipe is closed
        stream.write("more\n")
        stream.flush()
        assert stream.closed_by_reader and stream.error is None
    finally:
        os.close(write)


def test_a_full_disk_is_kept_to_be_reported_and_nothing_raises():
    fd = os.open("/dev/full", os.O_WRONLY)
    stream = GuardedStream(fd)
    try:
        print("a line", file=stream, flush=True)
        print("another", file=stream, flush=True)
        assert stream.error is not None and stream.error.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_writes_arrive_whole(tmp_path):
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    stream = GuardedStream(fd)
    stream.write("één\n" * 50_000)
    stream.flush()
    os.close(fd)
    assert path.read_text() == "één\n" * 50_000


def test_version_and_short_help():
    from nbbatch import __version__
    from nbbatch.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.strip() == f"nbbatch {__version__}"
    for args in (["-h"], ["run", "-h"], ["status", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output, args
