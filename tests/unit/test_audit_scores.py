"""Each audit score on inputs with a known answer, and a real frame next to its blurred copy."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from enrich.config import AuditConfig
from enrich.ops import audit
from enrich.stages.audit import Audit
from enrich.stages.base import ERROR

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "videos"


@pytest.fixture(scope="module")
def real_frame():
    from enrich.ops import video

    reader = video.open_video(str(FIXTURES / "one_fps_stills.mp4"))
    return reader[3].asnumpy()


def flags_of(frame, **extra):
    row = {"frame": frame, "width": frame.shape[1], "height": frame.shape[0], **extra}
    stage = Audit(AuditConfig())
    scores = stage.scores(row)
    return scores, stage.flags(scores)


def test_a_blurred_copy_of_a_sharp_frame_scores_as_blurred(real_frame):
    blurred = np.asarray(Image.fromarray(real_frame).filter(ImageFilter.GaussianBlur(6)))
    sharp_scores, sharp_flags = flags_of(real_frame)
    blur_scores, blur_flags = flags_of(blurred)
    assert blur_scores["sharpness"] < 0.2 * sharp_scores["sharpness"]
    assert sharp_flags["motion_blur"] is False and blur_flags["motion_blur"] is True


def test_a_uniform_frame_is_textureless_not_blurred():
    gray = np.full((240, 320, 3), 128, np.uint8)
    scores, flags = flags_of(gray)
    assert scores["textureless_fraction"] == 1.0
    assert flags["low_texture"] is True and flags["motion_blur"] is False and flags["exposure"] is False


def test_exposure_black_and_blown_out(real_frame):
    assert flags_of(np.zeros((120, 160, 3), np.uint8))[1]["exposure"] is True
    assert flags_of(np.full((120, 160, 3), 250, np.uint8))[1]["exposure"] is True
    assert flags_of(real_frame)[1]["exposure"] is False


def test_a_frame_whose_near_region_dominates_scores_as_close_range():
    h, w = 120, 160
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32)
    ground = 0.2 + ys / h  # disparity grows towards the bottom: an ordinary view of a floor
    close = np.full((h, w), 0.2, np.float32)
    close[20:, 10:150] = 5.0  # an object (a hand) filling most of the view, far nearer than the rest
    frame = np.zeros((h, w, 3), np.uint8)
    assert audit.near_fraction(ground, "relative_disparity") < AuditConfig().near_fraction
    assert audit.near_fraction(close, "relative_disparity") > 0.7
    assert flags_of(frame, depth=close, depth_kind="relative_disparity")[1]["close_range"] is True
    assert flags_of(frame, depth=ground, depth_kind="relative_disparity")[1]["close_range"] is False
    metric = np.full((h, w), 0.3, np.float32)  # everything 30 cm away
    assert audit.near_fraction(metric, "metric_depth_m") == 1.0


def test_a_person_filling_the_view_is_close_range():
    frame = np.zeros((100, 100, 3), np.uint8)
    people = json.dumps([{"bbox": [0, 0, 90, 90], "score": 0.9, "keypoints": []}])
    assert flags_of(frame, pose=people)[1]["close_range"] is True
    assert flags_of(frame, pose="[]")[1]["close_range"] is False
    assert flags_of(frame)[1]["close_range"] is None  # neither depth nor pose ran


def test_forward_backward_check():
    h, w, a = 40, 120, 0.2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    zero = np.zeros((h, w), np.float32)
    forward = np.dstack([a * xs, zero])  # a zoom: x -> (1 + a) x
    backward = np.dstack([-a * xs / (1 + a), zero])  # its exact inverse, sampled where forward lands
    assert audit.fb_inconsistent_fraction(forward, backward) == 0.0
    # backward read at p instead of p + f(p) would leave |f(p) + b(p)| = a^2 x / (1 + a): far pixels fail
    assert audit.fb_inconsistent_fraction(forward, np.dstack([-a * xs, zero])) > 0.1
    rng = np.random.default_rng(0)
    assert audit.fb_inconsistent_fraction(forward, rng.normal(0, 5, forward.shape).astype(np.float32)) > 0.8


def test_specular_highlights_are_small_bright_and_colourless():
    frame = np.zeros((360, 480, 3), np.uint8)
    frame[...] = (40, 60, 90)
    for y in range(20, 340, 40):
        frame[y : y + 3, 20:460:30] = 255  # glints
    assert audit.specular_fraction(frame) > 0.002
    sky = frame.copy()
    sky[:] = (40, 60, 90)
    sky[:200] = 255  # a blown-out sky is not a highlight
    assert audit.specular_fraction(sky) < 0.001


def test_reflection_mismatch_sees_texture_on_flat_depth():
    ys, xs = np.mgrid[0:360, 0:480]
    checker = (((ys // 30) + (xs // 30)) % 2 * 200).astype(np.float32)
    flat = np.full((360, 480), 0.5, np.float32)
    stepped = (((ys // 30) + (xs // 30)) % 2).astype(np.float32)  # depth edges where image edges are
    assert audit.reflection_mismatch(checker, flat) > 0.9
    assert audit.reflection_mismatch(checker, stepped) < 0.1


def test_flags_are_null_where_their_stage_did_not_run(real_frame):
    _, flags = flags_of(real_frame)
    assert flags["transparent_reflective"] is None and flags["flow_inconsistent"] is None
    assert flags["depth_flicker"] is None  # set at commit


def test_a_frame_the_audit_cannot_read_keeps_its_row(real_frame):
    batch = {
        "frame": np.array([real_frame, np.zeros((0,), np.uint8)], dtype=object),
        "width": np.array([real_frame.shape[1], 0]),
        "height": np.array([real_frame.shape[0], 0]),
        ERROR: np.array(["", ""], dtype=object),
    }
    out = Audit()(batch)
    assert list(out[ERROR]) == ["", ""]  # a diagnostic never costs a frame its depth
    assert out["flags"][1] is None and out["audit"][1] is None and out["thumb_jpeg"][1] is None
    assert json.loads(out["flags"][0])["exposure"] is False and out["thumb_jpeg"][0][:2] == b"\xff\xd8"


def test_pose_and_flow_pictures():
    from enrich.ops import visual

    frame = np.zeros((100, 100, 3), np.uint8)
    keypoints = [{"x": 50.0, "y": 10.0 + 4 * i, "score": 0.9} for i in range(17)]
    drawn = visual.draw_pose(frame, [{"bbox": [20, 5, 60, 90], "keypoints": keypoints}])
    assert drawn[5, 50].tolist() == [0, 255, 0]  # the box's top edge
    assert drawn[10, 50].tolist() == [255, 255, 0]  # a keypoint
    flow = np.zeros((10, 10, 2), np.float32)
    flow[:, 5:, 0] = 3.0
    rgb = visual.flow_rgb(flow, np.ones((10, 10), bool))
    assert rgb[:, :5].max() == 0 and rgb[:, 5:].max() > 200  # still is black, motion is coloured
