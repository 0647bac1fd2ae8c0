"""End to end through Ray on the real fixture clips, local input and output."""

import json
import os

import numpy as np
import pytest

from enrich.manifest.schema import CLIPS, FRAMES
from tests.e2e.conftest import decode_depth, read_table
from tests.helpers import needs_ffmpeg_libraries

pytestmark = pytest.mark.slow


def test_fixture_catalog_end_to_end_with_depth_oracle(run, fixtures_dir, tiny_depth_model, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        fixtures_dir,
        out,
        "--depth-model",
        tiny_depth_model,
        "--fps",
        1,
        "--max-frames-per-clip",
        3,
        "--depth-batch-size",
        2,
        "--temporal",  # the oracle is the model's own output; alignment is tested in test_audit_temporal.py
        "off",
        "--depth-precision",  # as the oracle runs (auto is bf16 on CPUs with AMX; see test_precision.py)
        "fp32",
    )
    assert code == 0, stdout + stderr
    assert "6 clips ok, 0 failed" in stdout and "plan: 6 to process (6 new)" in stderr

    clips = read_table(out / "clips")
    frames = read_table(out / "frames")
    assert clips.schema.names == CLIPS.names and frames.schema.names == FRAMES.names
    assert sorted(clips["clip_id"].to_pylist()) == sorted(p.name for p in fixtures_dir.glob("*.mp4"))
    assert set(clips["status"].to_pylist()) == {"ok"}
    assert frames.num_rows == sum(clips["n_frames"].to_pylist()) == 18
    keys = zip(frames["clip_id"].to_pylist(), frames["frame_index"].to_pylist(), strict=True)
    assert len(set(keys)) == frames.num_rows

    import decord
    from PIL import Image
    from transformers import pipeline

    reference = pipeline("depth-estimation", model=str(tiny_depth_model), device="cpu")
    for row in frames.to_pylist():
        if row["frame_index"] % 2:  # every other frame keeps the oracle quick
            continue
        depth = decode_depth(row)
        assert depth.shape == (row["height"], row["width"])
        frame = decord.VideoReader(str(fixtures_dir / row["clip_id"])).get_batch([row["frame_index"]]).asnumpy()[0]
        expected = reference(Image.fromarray(frame))["predicted_depth"].numpy()
        tolerance = row["depth_scale"] / 2 + 1e-4 * np.abs(expected).max()
        assert np.nanmax(np.abs(depth - expected)) <= tolerance, row["clip_id"]
        assert row["depth_kind"] == "relative_disparity"
        assert row["depth_model"].startswith(str(tiny_depth_model)) and "@sha256:" in row["depth_model"]

    by_clip = {r["clip_id"]: r for r in clips.to_pylist()}
    tokyo = by_clip["tokyo_walk.mp4"]
    assert (tokyo["width"], tokyo["height"], tokyo["source_frames"], tokyo["fps"]) == (1280, 720, 195, 15.0)
    assert by_clip["portrait_with_audio.mp4"]["width"] == 480
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())
    run_dir = next((out / "runs").iterdir())
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["fps"] == 1.0 and saved["config_hash"] == tokyo["config_hash"]


def test_rerun_skips_done_clips_and_redoes_changed_ones(run, small_input, tiny_depth_model, tmp_path):
    out = tmp_path / "out"
    args = (small_input, out, "--depth-model", tiny_depth_model, "--fps", 2, "--max-frames-per-clip", 4)
    assert run(*args)[0] == 0
    first_clips = read_table(out / "clips").to_pylist()
    files = {p: p.stat().st_mtime_ns for p in (out / "frames").rglob("*.parquet")}

    code, stdout, stderr = run(*args)
    assert code == 0 and "0 to process, 2 up to date" in stderr
    assert read_table(out / "clips").to_pylist() == first_clips
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").rglob("*.parquet")} == files

    clip = small_input / "aerial" / "field.mp4"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))  # content "changed"
    code, _, stderr = run(*args)
    assert code == 0 and "1 to process (1 changed), 1 up to date" in stderr
    frames = read_table(out / "frames")
    assert frames.num_rows == 4 + 4  # no duplicates: the clip's file was replaced
    runs = {r["clip_id"]: r["run_id"] for r in read_table(out / "clips").to_pylist()}
    assert runs["aerial/field.mp4"] != runs["coaster.mp4"]

    code, _, stderr = run(*args[:-2], "--max-frames-per-clip", 2)  # config changed: everything redone
    assert code == 0 and "2 to process (2 config)" in stderr
    assert read_table(out / "frames").num_rows == 4


def test_bad_inputs_fail_alone(run, bad_clips, tiny_depth_model, tmp_path):
    from tests.helpers import BAD_CLIPS

    out = tmp_path / "out"
    code, stdout, _ = run(bad_clips, out, "--depth-model", tiny_depth_model, "--fps", 2)
    assert code == 1, stdout
    assert f"1 clips ok, {len(BAD_CLIPS)} failed" in stdout
    rows = {r["clip_id"]: r for r in read_table(out / "clips").to_pylist()}
    assert "notes.txt" not in rows
    assert rows["good.mp4"]["status"] == "ok" and rows["good.mp4"]["n_frames"] == 7
    for name, reason in BAD_CLIPS.items():
        assert rows[name]["status"] == "failed" and rows[name]["error"].startswith(reason), rows[name]
        assert rows[name]["n_frames"] == 0
    frames = read_table(out / "frames")
    assert set(frames["clip_id"].to_pylist()) == {"good.mp4"}

    code, _, stderr = run(bad_clips, out, "--depth-model", tiny_depth_model, "--fps", 2)
    assert code == 1 and f"{len(BAD_CLIPS)} to process ({len(BAD_CLIPS)} failed), 1 up to date" in stderr


def test_metric_checkpoint_writes_metric_depth(run, small_input, tiny_metric_model, tmp_path):
    out = tmp_path / "out"
    assert run(small_input, out, "--depth-model", tiny_metric_model, "--max-frames-per-clip", 2)[0] == 0
    frames = read_table(out / "frames").to_pylist()
    assert {r["depth_kind"] for r in frames} == {"metric_depth_m"}
    assert all(np.nanmin(decode_depth(r)) >= 0 for r in frames)


def test_cpu_depth_actors_get_their_thread_count(ray_session, tiny_depth_model, small_input, tmp_path):
    """Ray sets OMP_NUM_THREADS=1 in a 1-CPU actor, which slows the model by a third; the plan
    must hand the depth actors their own value (read from Ray Data's logical plan)."""
    from enrich import pipeline
    from enrich.config import build
    from enrich.runtime import ClusterShape

    cfg = build({"input": str(small_input), "output": str(tmp_path / "o"), "depth_model": str(tiny_depth_model),
                 "depth_threads": 3})  # fmt: skip
    prep = pipeline.prepare(cfg)
    plans = pipeline.stage_plans(prep, ClusterShape(cpus=6, gpus=0, nodes=1, cpus_per_node=6), str(tmp_path / "s"))
    op = pipeline.build_dataset(prep.plan.todo, plans)._logical_plan.dag
    remote_args = {}
    while op.input_dependencies:
        remote_args[op.name] = op.ray_remote_args
        op = op.input_dependencies[0]
    depth = remote_args["MapBatches(Depth)"]
    assert depth["runtime_env"] == {"env_vars": {"OMP_NUM_THREADS": "3"}}  # 2 actors of 3 threads on 6 cores


@needs_ffmpeg_libraries
def test_torchcodec_decoder_writes_what_decord_writes(run, bad_clips, tiny_depth_model, tmp_path):
    """`--decoder torchcodec` in Ray's decode tasks: the same failures, the same rows, the same depth."""
    from tests.helpers import BAD_CLIPS

    tables = {}
    for decoder in ("decord", "torchcodec"):
        out = tmp_path / decoder
        code, stdout, _ = run(bad_clips, out, "--depth-model", tiny_depth_model, "--fps", 4, "--decoder", decoder)
        assert code == 1 and f"1 clips ok, {len(BAD_CLIPS)} failed" in stdout, stdout
        clips, frames = read_table(out / "clips"), read_table(out / "frames")
        tables[decoder] = clips.sort_by("clip_id"), frames.sort_by("frame_index")
    (clips_a, frames_a), (clips_b, frames_b) = tables["decord"], tables["torchcodec"]
    assert clips_b["status"].to_pylist() == clips_a["status"].to_pylist()
    for row in clips_b.to_pylist():  # a truncated file opens in torchcodec, then fails to decode
        assert row["clip_id"] == "good.mp4" or row["error"].startswith(BAD_CLIPS[row["clip_id"]]), row
    assert clips_b["config_hash"].to_pylist() == clips_a["config_hash"].to_pylist()
    for column in ("frame_index", "timestamp_s", "depth_png", "depth_scale", "depth_offset"):
        assert frames_b[column].to_pylist() == frames_a[column].to_pylist(), column
    assert frames_b.num_rows == 7
