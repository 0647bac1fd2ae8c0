"""Depth Anything 3 against the depth-anything-3 package's own recipe, on real frames, without Ray.

The reference is the package's: its `InputProcessor` (OpenCV resizes, `upper_bound_resize` at 504),
its network's forward pass, its `OutputProcessor`. The smoke model is the real DA3-Small network
with seeded random weights, its last layers rescaled so that its outputs vary (`build_random`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from enrich.manifest.kinds import DepthKind
from enrich.ops.quantize import dequantize
from enrich.stages.depth import da3
from enrich.stages.depth.actor import backend_of, load_estimator
from tests.helpers import assert_batched_equals_one_by_one

# What our on-device resizes (torch) may change against the package's OpenCV ones, through the
# random network: measured on these frames, mean 0.2-1.2 % and 99th percentile 0.7-4 % of depth.
MEAN_REL, P99_REL = 0.02, 0.06


@pytest.fixture(scope="module")
def da3_small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("da3-small")
    da3.build_random("da3-small", str(folder))
    return folder


@pytest.fixture(scope="module")
def estimator(da3_small):
    return load_estimator(str(da3_small), precision="fp32")


@pytest.fixture(scope="module")
def frames(fixtures_dir):
    import decord

    def read(name, indices):
        return list(decord.VideoReader(str(fixtures_dir / name)).get_batch(indices).asnumpy())

    # landscape 720p (shrunk), portrait (shrunk), 180p (enlarged)
    return read("tokyo_walk.mp4", [0, 30]) + read("portrait_with_audio.mp4", [0]) + read("tiny_2fps.mp4", [0])


def package_reference(net, frame: np.ndarray) -> dict:
    from depth_anything_3.utils.io.input_processor import InputProcessor
    from depth_anything_3.utils.io.output_processor import OutputProcessor

    images, _, _ = InputProcessor()([frame], process_res=504, process_res_method="upper_bound_resize", num_workers=1)
    with torch.inference_mode():
        out = net(images[None] if images.dim() == 4 else images)
    return OutputProcessor()(out)


def test_the_checkpoint_is_read_as_the_hub_layout(da3_small):
    assert json.loads((da3_small / "config.json").read_text()) == {"model_name": "da3-small"}
    assert (da3_small / "model.safetensors").is_file()
    assert backend_of(str(da3_small)) == "da3"


def test_processed_size_follows_the_package(frames):
    from depth_anything_3.utils.io.input_processor import InputProcessor

    for frame in frames:
        images, _, _ = InputProcessor()([frame], None, None, 504, "upper_bound_resize", num_workers=1)
        assert tuple(images.shape[-2:]) == da3.processed_size(*frame.shape[:2])
    assert da3.processed_size(720, 1280) == (280, 504) and da3.processed_size(2160, 3840) == (280, 504)


def test_depth_confidence_and_intrinsics_match_the_package(estimator, frames):
    for frame in frames:
        ref = package_reference(estimator.model, frame)
        raw = estimator.predict_raw([frame])
        depth, want = raw["depth"][0].numpy(), ref.depth[0]
        assert depth.shape == want.shape
        assert np.log(want).std() > 0.1, "the smoke model's depth must vary well above float noise"
        rel = np.abs(depth - want) / want
        assert rel.mean() < MEAN_REL and np.quantile(rel, 0.99) < P99_REL, (rel.mean(), np.quantile(rel, 0.99))
        conf = raw["depth_conf"][0].numpy()
        assert np.abs(conf - ref.conf[0]).mean() < MEAN_REL * np.abs(ref.conf[0]).mean()
        np.testing.assert_allclose(raw["intrinsics"][0].numpy(), ref.intrinsics[0], rtol=0.01)


def test_stored_map_and_intrinsics_are_in_the_frames_pixels(estimator, frames):
    import torch.nn.functional as F

    for frame in frames:
        (codes, scale, offset, extras), raw = estimator.predict_codes([frame])[0], estimator.predict_raw([frame])
        height, width = frame.shape[:2]
        assert codes.shape == (height, width) and codes.dtype == np.uint16
        full = F.interpolate(raw["depth"][:, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        stored = dequantize(codes, scale, offset)
        np.testing.assert_allclose(stored, full.numpy(), atol=scale)  # within a code step
        h, w = raw["depth"].shape[-2:]
        k = raw["intrinsics"][0].numpy()
        got = extras["intrinsics"]
        sx, sy = width / w, height / h
        want = {"fx": k[0, 0] * sx, "fy": k[1, 1] * sy, "cx": k[0, 2] * sx, "cy": k[1, 2] * sy}
        assert got == pytest.approx(want, rel=1e-5)
        assert got["cx"] == pytest.approx(width / 2, rel=1e-4) and got["cy"] == pytest.approx(height / 2, rel=1e-4)
        assert 100 < got["fx"] < 10 * width, "the smoke model's field of view is realistic"
        assert extras["depth_confidence"] == pytest.approx(float(raw["depth_conf"][0].median()), rel=1e-6)
    assert estimator.kind is DepthKind.RELATIVE_DEPTH


def test_batched_equals_one_by_one(estimator, frames):
    def compare(got, alone):
        # equal but for float noise between batch sizes (a code step, where it moves a rounding)
        stored, single = dequantize(*got[:3]), dequantize(*alone[:3])
        np.testing.assert_allclose(stored, single, rtol=1e-4, atol=2 * alone[1])
        assert got[3]["intrinsics"] == pytest.approx(alone[3]["intrinsics"], rel=1e-4)
        assert got[3]["depth_confidence"] == pytest.approx(alone[3]["depth_confidence"], rel=1e-4)

    # same-size frames are batched together, the others alone
    assert_batched_equals_one_by_one(estimator.predict_codes, frames[:2] + frames[3:], compare, sizes=(2,))


def test_bf16_stays_close_to_fp32(da3_small, frames):
    fp32 = load_estimator(str(da3_small), precision="fp32").predict_raw(frames[:1])["depth"]
    bf16 = load_estimator(str(da3_small), precision="bf16").predict_raw(frames[:1])["depth"]
    assert (torch.abs(bf16 - fp32) / fp32).mean() < 0.02


def test_unsupported_presets_and_mismatched_weights_fail_with_one_line(da3_small, tmp_path):
    metric = tmp_path / "metric"
    metric.mkdir()
    (metric / "config.json").write_text(json.dumps({"model_name": "da3metric-large"}))
    with pytest.raises(ValueError, match="da3metric-large' is not supported"):
        backend_of(str(metric))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_name": "da3-base"}))
    (wrong / "model.safetensors").write_bytes((da3_small / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="weights do not match Depth Anything 3 da3-base"):
        load_estimator(str(wrong))


def test_a_missing_package_is_named_with_the_install_line(da3_small, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    hidden = lambda name, *a: None if name == "depth_anything_3" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    with pytest.raises(ValueError, match="pip install --no-deps depth-anything-3==0.1.1"):
        backend_of(str(da3_small))
