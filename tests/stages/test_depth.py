"""Depth against transformers' own reference usage, on real frames, without Ray."""

import numpy as np
import pytest
from PIL import Image

from enrich.stages.depth import Depth
from enrich.stages.depth.model import DepthEstimator
from enrich.weights import ModelRef


@pytest.fixture(scope="module")
def frames(fixtures_dir):
    import decord

    portrait = decord.VideoReader(str(fixtures_dir / "portrait_with_audio.mp4")).get_batch([0, 30]).asnumpy()
    street = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4")).get_batch([0, 15, 30]).asnumpy()
    return [portrait[0], street[0], street[1], portrait[1], street[2]]


def reference(model_dir, frame):
    from transformers import pipeline

    pipe = pipeline("depth-estimation", model=str(model_dir), device="cpu")
    return pipe(Image.fromarray(frame))["predicted_depth"].numpy()


def test_batched_mixed_sizes_equal_pipeline(tiny_depth_model, frames):
    estimator = DepthEstimator(str(tiny_depth_model))
    maps = estimator.predict(frames)
    for frame, depth in zip(frames, maps, strict=True):
        assert depth.shape == frame.shape[:2] and depth.dtype == np.float32
        ref = reference(tiny_depth_model, frame)
        assert depth.std() > 0
        np.testing.assert_allclose(depth, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_one_estimator_serves_concurrent_calls(tiny_depth_model, frames):
    """A CPU actor runs its calls in threads on one shared Depth Anything (enrich.resources): every
    map must be exactly what the frame gets alone, however the calls interleave."""
    import threading

    import torch

    estimator = DepthEstimator(str(tiny_depth_model))
    alone = [estimator.predict([f])[0] for f in frames]
    together: dict[int, list[np.ndarray]] = {}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:

        def call(k: int) -> None:
            together[k] = [estimator.predict([f])[0] for _ in range(3) for f in frames[k::2]]

        workers = [threading.Thread(target=call, args=(k,)) for k in (0, 1)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        torch.set_num_threads(threads_before)
    for k in (0, 1):
        expected = alone[k::2] * 3
        assert len(together[k]) == len(expected)
        for got, want in zip(together[k], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_kind_follows_the_checkpoint(tiny_depth_model, tiny_metric_model):
    assert DepthEstimator(str(tiny_depth_model)).kind == "relative_disparity"
    assert DepthEstimator(str(tiny_metric_model)).kind == "metric_depth_m"


def test_stage_skips_error_rows_and_drops_frames(tiny_depth_model, frames):
    model = ModelRef(str(tiny_depth_model), "local", str(tiny_depth_model), "h")
    stage = Depth(model, threads=1, drop=("frame",))
    batch = {
        "frame": np.array([frames[1], np.zeros((0, 0, 3), np.uint8), frames[2]] + [], dtype=object),
        "error": np.array(["", "decode: broken", ""], dtype=object),
    }
    out = stage(batch)
    assert "frame" not in out and out["error"].tolist() == ["", "decode: broken", ""]
    assert out["depth_codes"][0].shape == frames[1].shape[:2] and out["depth_codes"][1].size == 0
    assert out["depth_codes"][0].dtype == np.uint16 and np.isnan(out["depth_scale"][1])
    assert list(out["depth_kind"]) == ["relative_disparity"] * 3


def test_a_failing_frame_fails_alone(tiny_depth_model, frames):
    model = ModelRef(str(tiny_depth_model), "local", str(tiny_depth_model), "h")
    stage = Depth(model, threads=1)
    bad = np.zeros((5, 7), np.uint8)  # not an RGB frame: the processor rejects it
    batch = {"frame": np.array([frames[1], bad], dtype=object), "error": np.array(["", ""], dtype=object)}
    out = stage(batch)
    assert out["error"][0] == "" and out["error"][1].startswith("depth: ")
    assert out["depth_codes"][0].shape == frames[1].shape[:2]


def test_mismatched_checkpoint_is_refused(tiny_depth_model, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_depth_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["fusion_hidden_size"] = 24  # the saved weights were built with 16
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="weights do not match the config .*saved as") as error:
        DepthEstimator(str(broken))
    assert "\n" not in str(error.value)


def test_codes_quantised_on_the_device_equal_quantize_of_the_maps(tiny_depth_model, frames):
    """The actor quantises on the model's device; the codes, scale and offset are exactly what
    `quantize` makes of the float maps `predict` returns."""
    from enrich.ops.quantize import quantize

    estimator = DepthEstimator(str(tiny_depth_model))
    for (codes, scale, offset), depth in zip(estimator.predict_codes(frames), estimator.predict(frames), strict=True):
        expected = quantize(depth)
        assert codes.dtype == np.uint16 and len(np.unique(codes)) > 1000  # a map, not a constant
        np.testing.assert_array_equal(codes, expected[0])
        assert (scale, offset) == expected[1:]
