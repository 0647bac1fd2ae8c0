"""Depth Anything (V1, V2 relative, V2 metric) through transformers, batched.

Pre- and post-processing are transformers' own, on the model's device: the checkpoint's image
processor (its torchvision backend: resize and normalise in torch, on the GPU when there is one),
and `post_process_depth_estimation` back to each frame's original size. `predict_codes` also
quantises there, so only the 16-bit codes come back to the host. Frames travel to the GPU from
pinned memory, without blocking. Batching only groups frames of the same size, so every frame gets
exactly the preprocessing it would get alone.
"""

from __future__ import annotations

import numpy as np
import torch

from enrich.manifest.kinds import DepthKind
from enrich.ops.checkpoints import expect_model_type
from enrich.ops.common import (
    compile_model,
    load_checked,
    map_same_size,
    pad_batch,
    pick_device,
    torch_dtype,
    torch_processor,
)
from enrich.ops.quantize import quantize_batch

# transformers' `depth_estimation_type` -> what the model's output is.
DEPTH_KINDS = {"relative": DepthKind.RELATIVE_DISPARITY, "metric": DepthKind.METRIC_DEPTH_M}

# Real Depth Anything V2 architectures (as in the published configs), for random-weight smoke runs.
_ARCHITECTURES = {
    "depth-anything-v2-small": dict(
        hidden=384, heads=6, layers=12, out=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64
    ),
    "depth-anything-v2-base": dict(
        hidden=768, heads=12, layers=12, out=[3, 6, 9, 12], neck=[96, 192, 384, 768], fusion=128
    ),
    "depth-anything-v2-large": dict(
        hidden=1024, heads=16, layers=24, out=[5, 12, 18, 24], neck=[256, 512, 1024, 1024], fusion=256
    ),
}


def build_random(name: str, folder: str, seed: int = 0) -> None:
    """Save a randomly initialised Depth Anything V2 of a real size, with the real image processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    arch = _ARCHITECTURES[name]
    backbone = Dinov2Config(
        hidden_size=arch["hidden"],
        num_attention_heads=arch["heads"],
        num_hidden_layers=arch["layers"],
        image_size=518,
        patch_size=14,
        out_indices=arch["out"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=arch["hidden"],
        neck_hidden_sizes=arch["neck"],
        fusion_hidden_size=arch["fusion"],
        depth_estimation_type="relative",
    )
    torch.manual_seed(seed)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    depth_anything_processor().save_pretrained(folder)


def depth_anything_processor(size: int = 518):
    """The preprocessing every published Depth Anything checkpoint ships."""
    from transformers.models.dpt.image_processing_dpt import DPTImageProcessor

    return DPTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,  # bicubic
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    )


RANDOM_BUILDERS = {name: (lambda folder, name=name: build_random(name, folder)) for name in _ARCHITECTURES}


class DepthEstimator:
    """A loaded checkpoint: `predict(frames)` returns float32 maps at each frame's size."""

    def __init__(
        self,
        folder: str,
        device: str | None = None,
        precision: str = "fp32",
        compile: bool = False,
        batch_size: int | None = None,
    ):
        """`precision`: see `enrich.ops.common.torch_dtype` (the stage passes the run's, `auto` by default).
        `compile`: run the model through `torch.compile` (`enrich.ops.common.compile_model`), with
        batches padded up to at most `batch_size` (the stage's)."""
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

        expect_model_type(folder, "depth_anything", "depth model")
        config = AutoConfig.from_pretrained(folder)
        self.device = device or pick_device()
        self.dtype = torch_dtype(precision, self.device)
        self.kind = DEPTH_KINDS[getattr(config, "depth_estimation_type", "relative")]
        self.processor = torch_processor(AutoImageProcessor, folder)
        self.model = load_checked(AutoModelForDepthEstimation, folder, dtype=self.dtype).to(self.device).eval()
        if self.device == "cpu":
            # The DPT head's convolutions run faster on channels-last weights on CPU, with maps equal
            # to ~1e-6 (`benchmarks/depth_layout.py`). RAFT and the pose models gained nothing or
            # lost from it when tried; GPUs are unmeasured.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.compiled, self.batch_size = compile, batch_size
        self.forward = compile_model(self.model) if compile else self.model

    @torch.inference_mode()
    def predict(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 [H, W, 3] frames -> float32 [H, W] depth, in input order."""
        return map_same_size(frames, lambda frame: frame.shape, lambda same: list(self._maps(same).cpu().numpy()))

    @torch.inference_mode()
    def predict_codes(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, float, float]]:
        """RGB uint8 [H, W, 3] frames -> (uint16 codes, scale, offset) per frame (`quantize`), in input
        order; the maps are quantised on the model's device."""

        def codes(same: list[np.ndarray]) -> list:
            return list(zip(*quantize_batch(self._maps(same)), strict=True))

        return map_same_size(frames, lambda frame: frame.shape, codes)

    def _maps(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Same-size frames -> float32 depth [N, H, W] on the model's device."""
        size = frames[0].shape[:2]
        pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # uint8 NCHW, as the processor takes it
        if self.device != "cpu":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        inputs = self.processor(images=pixels, return_tensors="pt", device=self.device)
        n, (pixel_values,) = pad_batch(
            self.compiled, inputs["pixel_values"].to(self.device, self.dtype), cap=self.batch_size
        )
        outputs = self.forward(pixel_values=pixel_values)
        outputs.predicted_depth = outputs.predicted_depth[:n].float()
        post = self.processor.post_process_depth_estimation(outputs, target_sizes=[size] * len(frames))
        return torch.stack([item["predicted_depth"] for item in post])
