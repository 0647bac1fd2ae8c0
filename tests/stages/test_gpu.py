"""On a CUDA device: the defaults it gets (bf16) and the device path (pinned copies, pre- and
post-processing on the GPU) agree with the CPU's fp32 results. Skipped where there is no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def frames(fixtures_dir):
    import decord

    street = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4"))
    return [street[0].asnumpy(), street[15].asnumpy()]


def test_auto_precision_is_bf16_on_cuda():
    from enrich.ops.common import torch_dtype

    assert torch_dtype("auto", "cuda") == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)


def test_depth_v2_on_cuda_in_bf16_stays_close_to_cpu_fp32(tiny_depth_model, frames):
    from enrich.ops.quantize import dequantize
    from enrich.stages.depth.model import DepthEstimator

    gpu = DepthEstimator(str(tiny_depth_model), device="cuda", precision="auto")
    cpu = DepthEstimator(str(tiny_depth_model), device="cpu", precision="fp32")
    for got, want in zip(gpu.predict_codes(frames), cpu.predict_codes(frames), strict=True):
        g, w = dequantize(*got), dequantize(*want)
        assert g.shape == w.shape and np.abs(g - w).mean() < 0.02 * (np.nanmax(w) - np.nanmin(w))


def test_da3_on_cuda_stays_close_to_cpu_fp32(tmp_path, frames):
    from enrich.stages.depth import da3
    from enrich.stages.depth.actor import load_estimator

    da3.build_random("da3-small", str(tmp_path))
    gpu = load_estimator(str(tmp_path), device="cuda", precision="auto").predict_raw(frames)["depth"].cpu()
    cpu = load_estimator(str(tmp_path), device="cpu", precision="fp32").predict_raw(frames)["depth"]
    assert ((gpu - cpu).abs() / cpu).mean() < 0.02


def test_raft_on_cuda_equals_cpu(tiny_raft, frames):
    from enrich.stages.flow.model import FlowEstimator

    small = [f[::4, ::4] for f in frames]
    gpu = FlowEstimator("raft_small", str(tiny_raft), device="cuda", num_updates=3).predict([tuple(small)])[0]
    cpu = FlowEstimator("raft_small", str(tiny_raft), device="cpu", num_updates=3).predict([tuple(small)])[0]
    assert np.abs(gpu - cpu).max() < 0.05  # TF32 on CUDA
