"""The command line through Typer's CliRunner: exit codes and messages."""

import json
import re
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from nbbatch.cli import app
from nbbatch.providers import registry
from nbbatch.sim.options import TARGETS

runner = CliRunner()
README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = ("run", "resume", "status", "plan", "simulate", "gallery", "cancel")


def manifest(tmp_path, prompts, **extra):
    doc = {"version": 1, "output": "out",
           "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
           "pacing": {"interval": 0, "concurrency": 2},
           "prompts": [{"id": f"p{i}", "prompt": p} for i, p in enumerate(prompts)]}
    doc.update(extra)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_run_on_the_in_process_simulator_exits_0(tmp_path):
    result = runner.invoke(app, ["run", str(manifest(tmp_path, ["a", "b"]))])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out/images").iterdir()) == ["p0.jpg", "p1.jpg"]
    assert "2 done · 0 failed · 0 pending of 2" in result.output


def test_blocked_image_exits_3(tmp_path):
    result = runner.invoke(app, ["run", str(manifest(tmp_path, ["a", "b [blocked]"]))])
    assert result.exit_code == 3


def test_budget_reached_exits_75_and_resume_needs_no_flags(tmp_path):
    path = manifest(tmp_path, ["a", "b", "c"])
    result = runner.invoke(app, ["run", str(path), "--max-images", "1"])
    assert result.exit_code == 75
    assert "--max-images reached" in result.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert status["counts"] == {"total": 3, "done": 1, "failed": 0, "pending": 2}
    # resume reuses the recorded flags, so the budget applies again: one more image
    assert runner.invoke(app, ["resume"]).exit_code == 75
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0


def test_manifest_error_exits_2_naming_file_line_and_field(tmp_path):
    path = manifest(tmp_path, ["a"])
    path.write_text(path.read_text() + "pacingg: {}\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert re.search(r"m\.yaml:\d+: pacingg", result.output)


def test_missing_key_exits_2_and_points_to_the_simulator(tmp_path):
    path = manifest(tmp_path, ["a"], defaults={"provider": "gemini"})
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "GEMINI_API_KEY" in result.output and "--provider simulator" in result.output


def test_bad_interval_flag_exits_2(tmp_path):
    result = runner.invoke(app, ["run", str(manifest(tmp_path, ["a"])), "--interval", "soon"])
    assert result.exit_code == 2 and "--interval" in result.output


def test_bad_duration_flag_exits_2(tmp_path):
    result = runner.invoke(app, ["run", str(manifest(tmp_path, ["a"])), "--max-duration", "2 days"])
    assert result.exit_code == 2 and "duration" in result.output


def test_plan_estimates_and_sends_nothing(tmp_path):
    path = manifest(tmp_path, ["a", "b", "c"], defaults={"provider": "gemini",
                    "model": "gemini-3-pro-image"}, pacing={"interval": "5-10"})
    result = runner.invoke(app, ["plan", str(path)])  # no key needed: nothing is sent
    assert result.exit_code == 0, result.output
    assert "to generate" in result.output and "$0.40" in result.output
    assert "0h 00m 22s" in result.output  # 3 starts x 7.5 s mean interval
    assert not (tmp_path / "out").exists()


def test_plan_counts_what_is_already_done(tmp_path):
    path = manifest(tmp_path, ["a", "b"])
    runner.invoke(app, ["run", str(path)])
    result = runner.invoke(app, ["plan", str(path)])
    assert re.search(r"already done\s+2", result.output)
    assert re.search(r"to generate\s+0", result.output)


def test_status_without_a_run_exits_2(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no nbbatch run" in result.output


def test_resume_without_a_run_here_exits_2():
    result = runner.invoke(app, ["resume"])
    assert result.exit_code == 2 and "nbbatch resume OUT" in result.output


def test_status_table_lists_failed_images_first(tmp_path):
    runner.invoke(app, ["run", str(manifest(tmp_path, ["fine", "no [blocked]"]))])
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0
    assert result.output.index("failed") < result.output.index("done")
    assert "1 done · 1 failed · 0 pending" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert f"nbbatch {command}" in README


def test_help_names_every_provider_and_every_simulator_target():
    commands = typer.main.get_command(app).commands
    helps = {(c, p.name): getattr(p, "help", "") for c in ("run", "simulate")
             for p in commands[c].params}
    assert all(name in helps["run", "provider"] for name in registry.NAMES)
    for option in ("outage_target", "fault_target", "quota_target"):
        assert all(target in helps["simulate", option] for target in TARGETS), option


def test_a_model_past_its_shutdown_gets_a_warning_at_plan_and_run(tmp_path):
    path = manifest(tmp_path, ["a"], defaults={"provider": "simulator",
                    "model": "gemini-2.5-flash-image"})
    for command in ("plan", "run"):
        result = runner.invoke(app, [command, str(path)])
        assert "gemini-2.5-flash-image was shut down on 2026-10-02" in result.output


def test_status_wide_shows_each_prompt_as_text(tmp_path):
    runner.invoke(app, ["run", str(manifest(tmp_path, ["[b]fox", "whale"]))])
    narrow = runner.invoke(app, ["status"])
    wide = runner.invoke(app, ["status", "--wide"])
    assert wide.exit_code == 0
    assert "[b]fox" in wide.output and "whale" in wide.output
    assert "whale" not in narrow.output


def test_cancel_without_live_jobs_says_so_and_without_a_run_exits_2(tmp_path):
    path = manifest(tmp_path, ["a"])
    runner.invoke(app, ["run", str(path)])
    result = runner.invoke(app, ["cancel", str(tmp_path / "out")])
    assert result.exit_code == 0 and "no live batch jobs" in result.output
    result = runner.invoke(app, ["cancel", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no nbbatch run" in result.output


def test_plan_in_batch_mode_shows_the_batch_price_and_the_online_one(tmp_path):
    path = manifest(tmp_path, ["a", "b"], defaults={"provider": "gemini",
                                                    "model": "gemini-3-pro-image"})
    result = runner.invoke(app, ["plan", str(path), "--mode", "batch", "--offline"])
    assert result.exit_code == 0, result.output
    assert "$0.13 at the batch price (online: $0.27)" in result.output
