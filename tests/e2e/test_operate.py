"""Operating on a schedule: the plan, retrying failed clips up to a limit, one run per OUTPUT."""

from __future__ import annotations

import pytest

from enrich.lock import NAME, Lock
from tests.e2e.conftest import read_table

pytestmark = pytest.mark.slow


def clip_lines(stdout: str) -> list[str]:
    """The clip lines of `--plan`: between its first line and the stage graph."""
    lines = stdout.splitlines()
    return [line for line in lines[1 : next(i for i, s in enumerate(lines) if s.startswith("operators"))]]


def test_plan_retries_and_limit(run, bad_clips, tiny_depth_model, tmp_path, capsys):
    from tests.helpers import BAD_CLIPS

    out = tmp_path / "out"
    args = ["--depth-model", tiny_depth_model, "--fps", 2]
    code, stdout, _ = run(bad_clips, out, *args, "--plan")
    n = len(BAD_CLIPS) + 1
    assert code == 0 and stdout.splitlines()[0] == f"plan: {n} to process ({n} new), 0 up to date"
    assert sorted(line.split()[1] for line in clip_lines(stdout)) == sorted([*BAD_CLIPS, "good.mp4"])
    operators = stdout.splitlines()[stdout.splitlines().index("operators, sized for this machine:") + 1 :]
    assert [line.split()[0] for line in operators] == ["decode", "depth", "encode-depth", "summary", "audit", "write"]
    assert not (out / "clips").exists() and not (out / NAME).exists()  # a plan does no work

    assert run(bad_clips, out, *args)[0] == 1
    rows = {r["clip_id"]: r for r in read_table(out / "clips").to_pylist()}
    assert {r["attempts"] for r in rows.values()} == {1}
    code, stdout, _ = run(bad_clips, out, *args, "--plan")
    assert stdout.splitlines()[0] == f"plan: {n - 1} to process ({n - 1} failed), 1 up to date"
    assert all(line.endswith("(attempt 2)") for line in clip_lines(stdout))

    assert run(bad_clips, out, *args)[0] == 1  # the second attempt fails again
    code, stdout, stderr = run(bad_clips, out, *args, "--retry-limit", 2)
    assert code == 0, stderr  # nothing was tried, so nothing failed in this run
    assert f"{n - 1} clips failed 2 times" in stdout and "0 failed, 1 up to date" in stdout
    assert {r["attempts"] for r in read_table(out / "clips").to_pylist() if r["status"] == "failed"} == {2}
    assert not (out / NAME).exists()


def test_a_second_run_on_the_same_output_is_refused(run, small_input, tiny_depth_model, tmp_path):
    out = tmp_path / "out"
    holder = Lock(str(out)).acquire()
    try:
        code, stdout, stderr = run(small_input, out, "--depth-model", tiny_depth_model, "--max-frames-per-clip", 1)
        assert code == 2 and stdout == ""
        assert stderr.count("\n") == 1 and "is held by another run (pid" in stderr
        assert not (out / "clips").exists()  # refused before reading or writing anything
    finally:
        holder.release()
    code, _, stderr = run(small_input, out, "--depth-model", tiny_depth_model, "--max-frames-per-clip", 1)
    assert code == 0, stderr
    assert not (out / NAME).exists()  # released at the end


def test_incremental_runs_redo_only_what_changed_including_the_model(run, small_input, tiny_depth_model, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model, out = tmp_path / "model", tmp_path / "out"
    shutil.copytree(tiny_depth_model, model)
    args = [small_input, out, "--depth-model", model, "--max-frames-per-clip", 1]
    assert run(*args)[0] == 0
    first = {r["clip_id"]: r for r in read_table(out / "frames").to_pylist()}

    code, stdout, _ = run(*args, "--plan")  # nothing to do
    assert stdout.splitlines()[0] == "plan: 0 to process, 2 up to date"

    shutil.copy(small_input / "coaster.mp4", small_input / "added.mp4")  # one clip added
    code, stdout, _ = run(*args, "--plan")
    assert stdout.splitlines()[:2] == ["plan: 1 to process (1 new), 2 up to date", "  new      added.mp4"]
    assert stdout.splitlines()[2].startswith("operators")
    assert run(*args)[0] == 0

    # The model changed: same folder, new weights (a fine-tune, say). Every clip is redone, its rows
    # replaced (not added to), and each row names the new weights.
    weights = load_file(model / "model.safetensors")
    save_file({k: v + 0.05 for k, v in weights.items()}, model / "model.safetensors", metadata={"format": "pt"})
    code, stdout, _ = run(*args, "--plan")
    assert stdout.splitlines()[0] == "plan: 3 to process (3 config), 0 up to date"
    assert run(*args)[0] == 0
    frames = read_table(out / "frames").to_pylist()
    assert sorted(r["clip_id"] for r in frames) == ["added.mp4", "aerial/field.mp4", "coaster.mp4"]
    for clip_id, before in first.items():
        after = next(r for r in frames if r["clip_id"] == clip_id)
        assert after["depth_model"] != before["depth_model"] and after["depth_model"].startswith(str(model))
        assert after["depth_png"] != before["depth_png"]
