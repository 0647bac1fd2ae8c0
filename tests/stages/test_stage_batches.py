"""Every model stage on hand-built batches, without Ray: rows that already failed pass through,
a failing row fails alone, the columns a later stage does not read are dropped; and every model op
gives a batch what it gives each item alone (`tests.helpers.assert_batched_equals_one_by_one`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enrich.ops.flowpng import decode_flow_png
from enrich.stages.flow import EncodeFlow, Flow
from enrich.stages.pose import Pose
from enrich.weights import ModelRef
from tests.helpers import assert_batched_equals_one_by_one

EMPTY = np.zeros((0, 0, 3), np.uint8)


@pytest.fixture(scope="module")
def frames(fixtures_dir):
    import decord

    street = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4"))
    tiny = decord.VideoReader(str(fixtures_dir / "tiny_2fps.mp4"))
    return [street[0].asnumpy()[::4, ::4], street[5].asnumpy()[::4, ::4], tiny[0].asnumpy(), tiny[1].asnumpy()]


def objects(items) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def test_flow_stage_pairs_rows_skips_failed_and_last_frames(tiny_raft, frames):
    stage = Flow(ModelRef(f"raft_small:{tiny_raft}", "file", str(tiny_raft), "h"), updates=2, threads=1,
                 drop=("frame", "next_frame"))  # fmt: skip
    batch = {
        "frame": objects([frames[0], EMPTY, frames[1], frames[2]]),
        "next_frame": objects([frames[1], EMPTY, EMPTY, np.zeros((5, 7), np.uint8)]),  # last: a broken pair
        "error": objects(["", "decode: broken", "", ""]),
    }
    out = stage(batch)
    assert "frame" not in out and "next_frame" not in out
    assert out["error"][:3].tolist() == ["", "decode: broken", ""] and out["error"][3].startswith("flow: ")
    assert out["flow"][0].shape == (*frames[0].shape[:2], 2) and out["flow_back"][0].shape == out["flow"][0].shape
    assert out["flow"][2].size == 0, "a clip's last frame has no successor: no flow, and no error"
    encoded = EncodeFlow()(out)
    assert encoded["flow_png"][2] == b"" and encoded["flow_png"][1] == b""
    flow, valid = decode_flow_png(encoded["flow_png"][0])
    assert valid.all() and np.abs(flow - out["flow"][0]).max() <= 0.5 / 64 + 1e-6


def test_pose_stage_skips_failed_rows_and_fails_a_bad_frame_alone(tiny_pose_models, frames):
    pose, detector = (ModelRef(str(p), "local", str(p), "h") for p in tiny_pose_models)
    stage = Pose(pose, detector, precision="fp32", threads=1, drop=("frame",))
    batch = {
        "frame": objects([frames[0], EMPTY, np.zeros((5, 7), np.uint8)]),
        "error": objects(["", "decode: broken", ""]),
    }
    out = stage(batch)
    assert "frame" not in out
    assert out["error"][:2].tolist() == ["", "decode: broken"] and out["error"][2].startswith("pose: ")
    assert isinstance(json.loads(out["pose"][0]), list) and out["pose"][1] == "" and out["pose"][2] == ""


def test_depth_v2_batched_equals_one_by_one(tiny_depth_model, frames):
    from enrich.ops.quantize import dequantize
    from enrich.stages.depth.model import DepthEstimator

    estimator = DepthEstimator(str(tiny_depth_model))

    def compare(got, alone):
        np.testing.assert_allclose(dequantize(*got), dequantize(*alone), rtol=1e-4, atol=2 * alone[1])

    assert_batched_equals_one_by_one(estimator.predict_codes, frames, compare)


def test_raft_batched_equals_one_by_one(tiny_raft, frames):
    from enrich.stages.flow.model import FlowEstimator

    estimator = FlowEstimator("raft_small", str(tiny_raft), device="cpu", num_updates=3)
    pairs = [(frames[0], frames[1]), (frames[2], frames[3]), (frames[1], frames[0]), (frames[3], frames[2])]

    def compare(got, alone):
        assert got.shape == alone.shape and np.abs(got - alone).max() < 1e-4

    assert_batched_equals_one_by_one(estimator.predict, pairs, compare)


def test_pose_batched_equals_one_by_one(tiny_pose_models, frames):
    from enrich.stages.pose.model import PoseEstimator

    estimator = PoseEstimator(*map(str, tiny_pose_models), precision="fp32")

    def compare(got, alone):
        assert len(got) == len(alone)
        for a, b in zip(got, alone, strict=True):
            np.testing.assert_allclose(a["bbox"], b["bbox"], rtol=1e-4, atol=1e-2)
            xy = [[k["x"], k["y"]] for k in a["keypoints"]]
            np.testing.assert_allclose(xy, [[k["x"], k["y"]] for k in b["keypoints"]], rtol=1e-4, atol=1e-2)

    alone = assert_batched_equals_one_by_one(estimator.predict, frames, compare)
    assert any(alone), "the tiny detector is built to find people in real frames"
