"""What the command line tells the user, through Typer's CliRunner (not a terminal, so the
plain-line forms): hints that name the right command, status views, piped status, logs
fit for cron, runs with nothing to do, and images whose file was deleted."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from nbbatch.cli import app

runner = CliRunner()
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (INFO|WARNING|ERROR|DEBUG) ")


def manifest(tmp_path, prompts, **extra):
    doc = {"version": 1, "output": "out",
           "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
           "pacing": {"interval": 0, "concurrency": 2},
           "prompts": [p if isinstance(p, dict) else {"id": f"p{i}", "prompt": p}
                       for i, p in enumerate(prompts)]}
    doc.update(extra)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- hints ------------------------------------------------------------------------------------


def test_status_and_resume_without_a_run_here_suggest_their_own_command():
    assert "name the output folder: nbbatch status OUT" in invoke("status").output
    assert "name the output folder: nbbatch resume OUT" in invoke("resume").output


def test_resume_without_a_key_suggests_what_resume_accepts(tmp_path, monkeypatch):
    path = manifest(tmp_path, ["a"], defaults={"provider": "gemini"})
    run = invoke("run", path)
    assert run.exit_code == 2 and "add --provider simulator" in run.output
    from nbbatch.store.ledger import Ledger

    (tmp_path / "out").mkdir(exist_ok=True)
    with Ledger.open(tmp_path / "out/ledger.db") as ledger:  # a run was recorded here before
        ledger.start_run(manifest=str(path), options={}, cwd=str(tmp_path), pid=1)
    resumed = invoke("resume", "out")
    assert resumed.exit_code == 2
    assert "nbbatch resume again" in resumed.output
    assert "nbbatch run MANIFEST --provider simulator" in resumed.output


def test_budgets_at_or_below_zero_are_refused_before_anything():
    for flag, value, words in (("--max-cost", "-1", "--max-cost must be an amount in USD above 0"),
                               ("--max-cost", "0", "above 0"),
                               ("--max-images", "0", "--max-images must be at least 1")):
        result = invoke("run", "m.yaml", flag, value)
        assert result.exit_code == 2 and words in result.output, (flag, value, result.output)


def test_exit_3_names_the_failed_images_and_how_to_retry_them(tmp_path):
    result = invoke("run", manifest(tmp_path, ["fine", "no [blocked]", "nope [blocked]"]))
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert any(line.endswith("failed p1: blocked: " + line.split(": ", 3)[-1]) for line in lines)
    assert any("failed p2" in line for line in lines)
    assert "to try them again: nbbatch run m.yaml --retry-failed" in result.output


def test_exit_75_says_how_to_continue(tmp_path):
    result = invoke("run", manifest(tmp_path, ["a", "b", "c"]), "--max-images", "1")
    assert result.exit_code == 75
    assert "images are still pending; continue (each run gets the same budget): " \
           "nbbatch resume out" in result.output
    assert "stopped: --max-images reached (1)" in result.output


# -- logs for cron ------------------------------------------------------------------------------


def test_every_log_line_is_stamped_and_the_first_says_what_the_run_will_do(tmp_path):
    result = invoke("run", manifest(tmp_path, ["a", "b [blocked]", "c"]), "--max-images", "1")
    lines = result.output.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), result.output
    assert re.search(r"INFO    start: 3 of 3 images pending; manifest .*m\.yaml; output "
                     r".*out; providers simulator; mode online$", lines[0])
    assert any(re.search(r" WARNING stopped: --max-images reached", line) for line in lines)


def test_a_run_with_nothing_to_do_prints_its_summary_and_no_table(tmp_path):
    path = manifest(tmp_path, [f"p{i}" for i in range(30)])
    assert invoke("run", path).exit_code == 0
    again = invoke("run", path)
    assert again.exit_code == 0
    assert "start: 0 of 30 images pending" in again.output
    assert "30 done · 0 failed · 0 pending of 30 - 0 made" in again.output
    assert "images/" not in again.output and "starting" not in again.output
    assert len(again.output.splitlines()) <= 4


def test_after_a_run_at_most_20_images_that_need_attention_are_listed(tmp_path):
    result = invoke("run", manifest(tmp_path, [f"no {i} [blocked]" for i in range(25)]))
    listed = [line for line in result.output.splitlines() if re.search(r"  failed p\d+: ", line)]
    assert len(listed) == 20
    assert "… and 5 more: nbbatch status out" in result.output


# -- status ----------------------------------------------------------------------------------


def test_status_views_and_the_last_run_at_the_top(tmp_path):
    invoke("run", manifest(tmp_path, ["no [blocked]", "fine", "also fine"]), "--max-images", "1")
    full = invoke("status").output.splitlines()
    assert re.match(r"last run: started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, took \d+s, exit 75$",
                    full[0])
    failed = invoke("status", "--failed").output
    pending = invoke("status", "--pending").output
    summary = invoke("status", "--summary").output
    assert "\tfailed\t" in failed and "\tpending\t" not in failed and "\tdone\t" not in failed
    assert "\tpending\t" in pending and "\tfailed\t" not in pending
    assert "\t" not in summary and "3 images: 1 done · 1 failed · 1 pending" in summary
    assert invoke("status", "--failed", "--pending").exit_code == 2


def test_a_run_in_progress_is_named_at_the_top_of_status(tmp_path):
    from nbbatch.store.lock import FolderLock

    invoke("run", manifest(tmp_path, ["a"]))
    with FolderLock(tmp_path / "out"):
        top = invoke("status", "--summary").output.splitlines()[0]
    assert re.match(r"a run is in progress \(pid \d+ on .+, since \d{4}-\d\d-\d\d ", top), top


def test_piped_status_is_one_whole_line_per_image(tmp_path):
    long_id = "an-id-" + "x" * 90
    invoke("run", manifest(tmp_path, [{"id": long_id, "prompt": "no [blocked]"},
                                      {"id": "short", "prompt": "fine"}]))
    lines = invoke("status").output.splitlines()
    rows = [line.split("\t") for line in lines if "\t" in line]
    assert rows[0] == ["id", "#", "status", "provider", "model", "tries", "file / error"]
    assert [r[0] for r in rows[1:]] == [long_id, "short"]  # failed first, never wrapped
    assert rows[1][2] == "failed" and rows[1][6].startswith("blocked: ")


def test_piped_status_lines_show_every_active_character_as_its_escape():
    from nbbatch.cli.tables import status_lines
    from nbbatch.engine.status import ShownImage
    from nbbatch.store.records import ImageRow

    def row(id_, model, message):
        return ImageRow(id_, 1, "f", "failed", "gemini", model, 2, None, None, None, None,
                        "invalid", message, 0, None, None, prompt="a\tb")

    plain = row("plain", "m", "no")
    hostile = row("x\u202ey", "m\r", "tab\there \x1b[2J")
    lines = list(status_lines([ShownImage(r, "failed", f"invalid: {r.error_message}")
                               for r in (plain, hostile)], wide=True))
    assert lines[1] == "plain\ta\\x09b\t1\tfailed\tgemini\tm\t2\tinvalid: no"
    assert lines[2].split("\t") == ["x\\u202ey", "a\\x09b", "1", "failed", "gemini", "m\\x0d",
                                    "2", "invalid: tab\\x09here \\x1b[2J"]


# -- a deleted image --------------------------------------------------------------------------


def test_a_deleted_image_shows_missing_and_is_made_again(tmp_path):
    path = manifest(tmp_path, ["socks", "shoes"])
    assert invoke("run", path).exit_code == 0
    (tmp_path / "out/images/p0.jpg").unlink()
    with open(tmp_path / "out/images/p1.jpg", "ab") as grown:
        grown.write(b"extra")
    status = invoke("status").output
    assert "p0\t1\tmissing\t" in status and "images/p0.jpg is missing" in status
    assert "p1\t1\tmissing\t" in status and "the ledger recorded" in status
    doc = json.loads(invoke("status", "--json").output)
    assert [i["missing"] for i in doc["items"]] == [True, True]
    plan = invoke("plan", path, "--offline").output
    assert re.search(r"to generate\s+2", plan) and re.search(r"files missing\s+2", plan)
    again = invoke("run", path)
    assert again.exit_code == 0
    assert "p0: images/p0.jpg is missing; it will be made again" in again.output
    assert "start: 2 of 2 images pending" in again.output
    assert (tmp_path / "out/images/p0.jpg").exists()
    assert "missing" not in invoke("status").output
