"""bf16 against fp32, on CPU (bf16 runs there too), on real frames: the tolerances that make bf16
the CUDA default. Each model runs at its real size with random weights; every comparison first
checks that the fp32 oracle varies far above float noise, and that bf16 really ran (it differs).

Stated bounds (measured values are several times smaller):
- depth (Depth Anything V2 ViT-S): median error under 0.5%, 99th percentile under 3% of the map's
  1-99% range;
- flow (RAFT, bf16 autocast): median end-point error under 0.25 px, 99th percentile under 1 px;
- pose (ViTPose heatmaps on given boxes): within 2% of the heatmaps' range, keypoints moved 0.5 px
  at the median. A few keypoints of a random model have two near-equal peaks and may jump between
  them, so the keypoint bound is a median. The RT-DETR detector stays fp32 (in bf16 its outputs
  turn NaN), so the boxes are the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enrich.ops.common import torch_dtype
from enrich.weights import ModelRef, materialize


@pytest.fixture(scope="module")
def street(fixtures_dir):
    import av

    with av.open(str(fixtures_dir / "tokyo_walk.mp4")) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 2:
                return frames


def test_auto_is_bf16_on_cuda_and_on_amx_cpus_and_explicit_precisions_are_honoured():
    from enrich.ops.common import cpu_bf16

    assert torch_dtype("bf16", "cpu") == torch.bfloat16 and torch_dtype("fp32", "cpu") == torch.float32
    assert torch_dtype("fp16", "cuda") == torch.float16
    assert torch_dtype("auto", "cpu") == (torch.bfloat16 if cpu_bf16() == "amx" else torch.float32)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert torch_dtype("auto", "cuda") == torch.bfloat16


@pytest.mark.slow  # ~20 s: the stage tier's longest
def test_depth_bf16_is_within_tolerance_of_fp32(street, cache_dir):
    from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator

    ref = ModelRef("random:depth-anything-v2-small", "random", "depth-anything-v2-small", "seed0")
    folder = materialize(ref, RANDOM_BUILDERS)
    fp32 = DepthEstimator(folder, device="cpu", precision="fp32").predict(street)
    bf16 = DepthEstimator(folder, device="cpu", precision="bf16").predict(street)
    for a, b in zip(fp32, bf16, strict=True):
        spread = np.percentile(a, 99) - np.percentile(a, 1)
        assert spread > 1e4 * np.finfo(np.float32).eps * np.abs(a).max()  # a map, not float noise
        error = np.abs(a - b) / spread
        assert 0 < np.median(error) < 0.005, np.median(error)
        assert np.percentile(error, 99) < 0.03, np.percentile(error, 99)


def test_flow_bf16_autocast_is_within_tolerance_of_fp32(street, tmp_path):
    from enrich.stages.flow.model import FlowEstimator, build_random

    path = str(tmp_path / "raft_small.pt")
    build_random("raft_small", path)
    pair = [(street[0][::2, ::2], street[1][::2, ::2])]
    a = FlowEstimator("raft_small", path, device="cpu", num_updates=6, precision="fp32").predict(pair)[0]
    b = FlowEstimator("raft_small", path, device="cpu", num_updates=6, precision="bf16").predict(pair)[0]
    assert b.dtype == np.float32 and np.percentile(np.linalg.norm(a, axis=-1), 50) > 1.0  # pixels of flow
    error = np.linalg.norm(a - b, axis=-1)
    assert 0 < np.median(error) < 0.25, np.median(error)
    assert np.percentile(error, 99) < 1.0, np.percentile(error, 99)


def test_pose_bf16_is_within_tolerance_of_fp32(street, tmp_path):
    from enrich.stages.pose.model import PoseEstimator, build_random_rtdetr, build_random_vitpose

    build_random_vitpose(str(tmp_path / "vitpose"), "tiny")
    build_random_rtdetr(str(tmp_path / "rtdetr"), "tiny")
    models = {p: PoseEstimator(str(tmp_path / "vitpose"), str(tmp_path / "rtdetr"), device="cpu", precision=p)
              for p in ("fp32", "bf16")}  # fmt: skip
    boxes = [np.array([[100, 100, 200, 400], [600, 200, 150, 300], [300, 300, 100, 200]], np.float32)]
    heatmaps, keypoints = {}, {}
    with torch.inference_mode():
        for name, model in models.items():
            pixels = model.pose_processor([street[0]], boxes=boxes, return_tensors="pt")["pixel_values"]
            heatmaps[name] = model.pose_model(pixel_values=pixels.to(model.dtype)).heatmaps.float()
            keypoints[name] = np.concatenate([p["keypoints"].numpy() for p in model._estimate([street[0]], boxes)[0]])
        boxes_found = {name: model._detect([street[0]]) for name, model in models.items()}
    assert len(boxes_found["fp32"][0][0]) > 0  # people to compare
    for (a, sa), (b, sb) in zip(boxes_found["fp32"][0:1], boxes_found["bf16"][0:1], strict=True):
        np.testing.assert_array_equal(a, b)  # RT-DETR stays fp32: the same people whatever the precision
        np.testing.assert_array_equal(sa, sb)
    spread = float(heatmaps["fp32"].max() - heatmaps["fp32"].min())
    assert heatmaps["fp32"].std() > 1e-3
    assert 0 < float((heatmaps["fp32"] - heatmaps["bf16"]).abs().max()) < 0.02 * spread
    assert np.median(np.linalg.norm(keypoints["fp32"] - keypoints["bf16"], axis=1)) < 0.5


def test_the_stage_names_the_attention_kernel_transformers_picks(tiny_depth_model):
    """Dinov2 (Depth Anything's backbone) resolves to PyTorch's fused SDPA; the stage finds that
    without loading weights, for the stage line of `enrich run --verbose`."""
    from transformers import AutoModelForDepthEstimation

    from enrich.stages.depth import RANDOM_MODELS, STAGE
    from enrich.weights import resolve

    note = STAGE.attention({"model": resolve(str(tiny_depth_model), RANDOM_MODELS)})
    loaded = AutoModelForDepthEstimation.from_pretrained(str(tiny_depth_model))
    assert note == f"attention {loaded.backbone.config._attn_implementation}" == "attention sdpa"
