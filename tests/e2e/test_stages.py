"""Depth, flow and pose in one streaming pass: the manifest against each library's reference usage."""

from __future__ import annotations

import json
import shutil

import decord
import numpy as np
import pytest

from enrich.ops.flowpng import decode_flow_png
from enrich.stages import REGISTRY
from enrich.stages.flow.model import FlowEstimator
from tests.e2e.conftest import decode_depth, read_table
from tests.helpers import gradient_frames, write_video

pytestmark = pytest.mark.slow


@pytest.fixture
def models(tiny_depth_model, tiny_raft, tiny_pose_models):
    pose, detector = tiny_pose_models
    return [
        "--depth-model", tiny_depth_model, "--flow-model", f"raft_small:{tiny_raft}",
        "--pose-model", pose, "--detector-model", detector,
    ]  # fmt: skip


def frames_of(path, indices) -> list[np.ndarray]:
    return list(decord.VideoReader(str(path)).get_batch(list(indices)).asnumpy())


def torchvision_flow(weights_file, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """torchvision's documented usage: the weights' transforms, then the last of RAFT's outputs."""
    import torch
    from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

    model = raft_small(weights=None).eval()
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    one, two = (torch.from_numpy(f).permute(2, 0, 1)[None] for f in (first, second))
    one, two = Raft_Small_Weights.DEFAULT.transforms()(one, two)
    with torch.inference_mode():
        return model(one, two)[-1][0].permute(1, 2, 0).numpy()


def transformers_pose(pose_dir, detector_dir, frame: np.ndarray, threshold: float) -> list[dict]:
    """The ViTPose model doc's top-down recipe, one frame at a time."""
    import torch
    from transformers import AutoProcessor, RTDetrForObjectDetection, VitPoseForPoseEstimation

    det_proc, detector = (
        AutoProcessor.from_pretrained(detector_dir),
        RTDetrForObjectDetection.from_pretrained(detector_dir),
    )
    pose_proc, pose = AutoProcessor.from_pretrained(pose_dir), VitPoseForPoseEstimation.from_pretrained(pose_dir)
    with torch.inference_mode():
        out = detector(**det_proc(images=frame, return_tensors="pt"))
        found = det_proc.post_process_object_detection(
            out, target_sizes=torch.tensor([frame.shape[:2]]), threshold=threshold
        )[0]
        people = found["labels"] == 0
        boxes = found["boxes"][people].numpy().copy()
        boxes[:, 2:] -= boxes[:, :2]
        if not len(boxes):
            return []
        inputs = pose_proc(frame, boxes=[boxes], return_tensors="pt")
        results = pose_proc.post_process_pose_estimation(pose(**inputs), boxes=[boxes])[0]
    return [
        {
            "bbox": box.tolist(),
            "score": float(score),
            "keypoints": r["keypoints"].numpy(),
            "kp_scores": r["scores"].numpy(),
        }
        for box, score, r in zip(boxes, found["scores"][people].numpy(), results, strict=True)
    ]


def test_three_stages_in_one_pass_match_the_references(
    run, models, tiny_raft, tiny_pose_models, fixtures_dir, tmp_path
):
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(fixtures_dir / "tokyo_walk.mp4", clips / "walk.mp4")
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", clips / "tiny.mp4")
    out = tmp_path / "out"
    # fp32, as the references run (auto is bf16 on CPUs with AMX; tests/stages/test_precision.py)
    exact = ("--depth-precision", "fp32", "--pose-precision", "fp32", "--flow-precision", "fp32")
    code, stdout, err = run(
        clips, out, "--stages", "depth,flow,pose", *models, *exact, "--fps", 1, "--max-frames-per-clip", 3
    )
    assert code == 0, err
    rows = sorted(read_table(out / "frames").to_pylist(), key=lambda r: (r["clip_id"], r["frame_index"]))
    assert [r["clip_id"] for r in rows] == ["tiny.mp4"] * 3 + ["walk.mp4"] * 3
    for r in rows:
        assert r["depth_png"] and np.isfinite(decode_depth(r)).all()
        assert r["flow_model"].startswith(f"raft_small:{tiny_raft}@sha256:")
        assert r["pose_model"].startswith(str(tiny_pose_models[0])) and "detector" in r["pose_model"]
        assert isinstance(r["pose"], list)
    # flow: frame t -> the next sampled frame of the same clip; the clip's last frame has none
    for clip in ("tiny.mp4", "walk.mp4"):
        own = [r for r in rows if r["clip_id"] == clip]
        assert own[-1]["flow_png"] is None and all(r["flow_png"] for r in own[:-1])
    walk = [r for r in rows if r["clip_id"] == "walk.mp4"]  # 720x1280: RAFT needs no padding
    frames = frames_of(fixtures_dir / "tokyo_walk.mp4", [r["frame_index"] for r in walk])
    for r, first, second in zip(walk, frames, frames[1:], strict=False):
        flow, valid = decode_flow_png(r["flow_png"])
        assert flow.shape == (720, 1280, 2) and valid.all()
        # 1/128 px of PNG rounding, plus float noise between thread counts (RAFT iterates on it)
        np.testing.assert_allclose(flow, torchvision_flow(tiny_raft, first, second), atol=0.5 / 64 + 2e-3)
    # pose: the people of each frame, as transformers' reference recipe finds them
    tiny_frames = frames_of(fixtures_dir / "tiny_2fps.mp4", [r["frame_index"] for r in rows[:3]])
    for r, frame in zip(rows[:3] + walk, tiny_frames + frames, strict=True):
        expected = transformers_pose(*tiny_pose_models, frame, threshold=0.5)
        assert len(r["pose"]) == len(expected)
        for got, want in zip(r["pose"], expected, strict=True):
            np.testing.assert_allclose(got["bbox"], want["bbox"], rtol=1e-4, atol=1e-2)
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)
            assert len(got["keypoints"]) == 17
            xy = np.array([[k["x"], k["y"]] for k in got["keypoints"]])
            np.testing.assert_allclose(xy, want["keypoints"], rtol=1e-4, atol=1e-2)
    assert any(r["pose"] for r in rows), "the tiny detector is built to find people in real frames"
    saved = json.loads(next((out / "runs").glob("*/config.json")).read_text())
    assert set(saved["models"]) == {"depth", "flow", "pose"} and saved["config"]["stages"] == "flow,depth,pose"
    # every column each stage declares (in its package) is written, with its declared type
    table = read_table(out / "frames")
    da3_only = {"depth_confidence", "intrinsics"}  # null for V1/V2 models (tests/e2e/test_da3.py writes them)
    for name in ("depth", "flow", "pose"):
        for column in REGISTRY[name].columns:
            assert table.schema.field(column.name).type == column.type
            if column.name not in da3_only:
                assert table.column(column.name).null_count < table.num_rows, f"{column.name} is never written"


def test_flow_pairs_span_decode_chunks_and_batches(run, tiny_depth_model, tiny_raft, fixtures_dir, tmp_path):
    """10 sampled frames: decode emits chunks of 8 and flow runs one pair per batch; every pair,
    including the one across the chunk boundary, is (frame t, frame t+1) of the same clip."""
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(fixtures_dir / "sintel_scene_cuts_10s.mp4", clips / "sintel.mp4")
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", clips / "tiny.mp4")
    out = tmp_path / "out"
    args = ["--stages", "flow", "--flow-model", f"raft_small:{tiny_raft}", "--flow-batch-size", 1]
    code, _, err = run(clips, out, *args, "--fps", 4, "--max-frames-per-clip", 10, "--flow-updates", 2)
    assert code == 0, err
    rows = sorted(read_table(out / "frames").to_pylist(), key=lambda r: (r["clip_id"], r["frame_index"]))
    sintel = [r for r in rows if r["clip_id"] == "sintel.mp4"]
    assert len(sintel) == 10 and all(r["depth_png"] is None and r["depth_model"] is None for r in rows)
    frames = frames_of(fixtures_dir / "sintel_scene_cuts_10s.mp4", [r["frame_index"] for r in sintel])
    estimator = FlowEstimator("raft_small", str(tiny_raft), num_updates=2)
    for r, first, second in zip(sintel, frames, frames[1:], strict=False):
        flow, valid = decode_flow_png(r["flow_png"])
        want = estimator.predict([(first, second)])[0]
        assert flow.shape == (480, 854, 2)
        np.testing.assert_allclose(flow[valid], want[valid], atol=0.5 / 64 + 2e-3)
    assert sintel[-1]["flow_png"] is None


def test_edge_cases_one_frame_tiny_frames_and_nobody(run, models, tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    write_video(clips / "single.mp4", gradient_frames(1))
    write_video(clips / "small.mp4", gradient_frames(3, height=40, width=56))  # under RAFT's minimum
    out = tmp_path / "out"
    code, _, err = run(clips, out, "--stages", "depth,flow,pose", *models, "--detector-threshold", 1.0)
    assert code == 0, err
    rows = sorted(read_table(out / "frames").to_pylist(), key=lambda r: (r["clip_id"], r["frame_index"]))
    single = [r for r in rows if r["clip_id"] == "single.mp4"]
    small = [r for r in rows if r["clip_id"] == "small.mp4"]
    assert len(single) == 1 and single[0]["flow_png"] is None  # no successor: no flow, not an error
    assert [decode_flow_png(r["flow_png"])[0].shape for r in small[:-1]] == [(40, 56, 2)] * 2
    assert all(r["pose"] == [] for r in rows)  # nobody above a threshold of 1: an empty list, not null
    clips_table = read_table(out / "clips").to_pylist()
    assert {c["status"] for c in clips_table} == {"ok"}


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--flow-model", "raft_small:{missing}", "weights file not found"),
        ("--flow-model", "raft_large:{raft}", "flow model raft_large:.* cannot be loaded"),
        ("--flow-model", "raft_medium", "unknown flow model"),
        ("--pose-model", "{detector}", "pose model .* cannot be loaded"),
    ],
)
def test_bad_flow_or_pose_models_fail_fast(
    run, models, tiny_raft, tiny_pose_models, small_input, tmp_path, flag, value, message
):
    value = value.format(missing=tmp_path / "nope.pt", raft=tiny_raft, detector=tiny_pose_models[1])
    args = list(models)
    args[args.index(flag) + 1] = value
    code, stdout, err = run(small_input, tmp_path / "out", "--stages", "depth,flow,pose", *args)
    errors = [line for line in err.splitlines() if line.startswith("enrich: error")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert pytest.importorskip("re").search(message, errors[0]), err
    assert not (tmp_path / "out" / "frames").exists()
