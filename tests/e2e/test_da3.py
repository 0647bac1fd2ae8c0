"""Depth Anything 3 end to end: a checkpoint folder in the hub layout, through Ray, into the manifest."""

from __future__ import annotations

import shutil

import decord
import numpy as np
import pytest

from enrich.stages.depth import da3
from enrich.stages.depth.actor import load_estimator
from tests.e2e.conftest import decode_depth, read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def da3_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("DA3-SMALL")  # a local folder as the hub has it
    da3.build_random("da3-small", str(folder))
    return folder


def test_da3_writes_relative_depth_confidence_and_intrinsics(run, da3_folder, fixtures_dir, tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(fixtures_dir / "tokyo_walk.mp4", clips / "walk.mp4")
    shutil.copy(fixtures_dir / "portrait_with_audio.mp4", clips / "portrait.mp4")
    out = tmp_path / "out"
    args = ["--depth-model", da3_folder, "--depth-precision", "fp32", "--fps", 1, "--max-frames-per-clip", 2]
    code, _, err = run(clips, out, *args, "--temporal", "off")
    assert code == 0, err
    rows = sorted(read_table(out / "frames").to_pylist(), key=lambda r: (r["clip_id"], r["frame_index"]))
    assert [r["clip_id"] for r in rows] == ["portrait.mp4"] * 2 + ["walk.mp4"] * 2
    estimator = load_estimator(str(da3_folder), precision="fp32")
    for clip, name in (("portrait.mp4", "portrait_with_audio.mp4"), ("walk.mp4", "tokyo_walk.mp4")):
        own = [r for r in rows if r["clip_id"] == clip]
        indices = [r["frame_index"] for r in own]
        frames = list(decord.VideoReader(str(fixtures_dir / name)).get_batch(indices).asnumpy())
        for row, (codes, scale, offset, extras) in zip(own, estimator.predict_codes(frames), strict=True):
            assert row["depth_kind"] == "relative_depth" and row["depth_model"].startswith(str(da3_folder))
            # what the model gives the frame, stored losslessly (within float noise between processes)
            want = codes * scale + offset
            np.testing.assert_allclose(decode_depth(row), want, rtol=1e-4, atol=2 * scale)
            assert row["depth_confidence"] == pytest.approx(extras["depth_confidence"], rel=1e-4)
            assert row["intrinsics"] == pytest.approx(extras["intrinsics"], rel=1e-4)
            assert row["intrinsics"]["cx"] == pytest.approx(row["width"] / 2, rel=1e-4)

    # Temporal alignment works on relative depth too: it rescales the stored maps along each shot
    # (no cuts here: a frame a second of a walk reads as a new shot)
    code, _, err = run(clips, tmp_path / "aligned", *args, "--temporal", "smooth", "--cut-threshold", 1)
    assert code == 0, err
    clips_table = read_table(tmp_path / "aligned" / "clips").to_pylist()
    assert all(c["status"] == "ok" for c in clips_table)
    assert all(c["flicker_after"] is not None and c["segments"] == 1 for c in clips_table)
    aligned = read_table(tmp_path / "aligned" / "frames").to_pylist()
    assert any(r["depth_offset"] != s["depth_offset"] for r, s in zip(sorted(aligned, key=_key), rows, strict=True))


def _key(row):
    return row["clip_id"], row["frame_index"]
