from pathlib import Path

from nbbatch.store import recent


def test_remembers_the_last_output_folder_per_directory(tmp_path):
    env = {"NBBATCH_STATE_DIR": str(tmp_path / "state")}
    recent.remember(Path("/work/a"), Path("/out/1"), env)
    recent.remember(Path("/work/b"), Path("/out/2"), env)
    recent.remember(Path("/work/a"), Path("/out/3"), env)
    assert recent.last_out(Path("/work/a"), env) == Path("/out/3")
    assert recent.last_out(Path("/work/b"), env) == Path("/out/2")
    assert recent.last_out(Path("/work/c"), env) is None


def test_a_temporary_file_left_by_a_killed_run_is_cleaned(tmp_path):
    env = {"NBBATCH_STATE_DIR": str(tmp_path)}
    (tmp_path / "recent-runs.json.4242.tmp").write_text("{")
    recent.remember(Path("/w"), Path("/o"), env)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recent-runs.json"]


def test_an_unwritable_state_folder_does_not_stop_a_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    recent.remember(Path("/w"), Path("/o"), {"NBBATCH_STATE_DIR": str(blocker / "state")})
    assert recent.last_out(Path("/w"), {"NBBATCH_STATE_DIR": str(blocker / "state")}) is None
