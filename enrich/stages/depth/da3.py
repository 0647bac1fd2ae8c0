"""Depth Anything 3 (ByteDance Seed), through the `depth-anything-3` package's own network classes.

Only its low-level model code is imported (`depth_anything_3.cfg`, `depth_anything_3.model`): its
high-level API pulls in moviepy, pycolmap and open3d, which enrich does not install. The package is
installed with `--no-deps` (README: Depth Anything 3).

A checkpoint is a folder in the hub layout the package's `DepthAnything3.from_pretrained` reads:
`config.json` naming the preset (`{"model_name": "da3-small"}`) and `model.safetensors` holding the
wrapper's state dict (keys `model.backbone...`, `model.head...`).

The recipe is the package's (`depth_anything_3.utils.io.input_processor`, `upper_bound_resize`):
longest side to 504, each side then rounded to the nearest multiple of 14, ImageNet normalisation;
the network under autocast. Here it runs on the model's device, in torch: the same two resizes,
antialiased bilinear or bicubic where the package uses OpenCV (`tests/stages/test_da3.py`
bounds the difference). Each frame is its own view (batch of B frames, one view each), so frames
never attend to one another and a frame's output does not depend on its batch.

Per frame: depth at the frame's size (bilinear), quantised on the device; the median of the
confidence map (any-view models); the intrinsics fx, fy, cx, cy rescaled from the processed image
to the frame's pixels (any-view models).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from enrich.ops.common import map_same_size, pick_device, torch_dtype
from enrich.ops.quantize import quantize_batch
from enrich.stages.depth.da3_presets import INSTALL, PRESETS, check_preset

PROCESS_RES = 504  # the package's default `process_res`, longest side
PATCH = 14
INTRINSICS = ("fx", "fy", "cx", "cy")
RANDOM_LOGIT_GAIN = 60.0  # see `build_random`
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _network(preset: str) -> torch.nn.Module:
    try:
        from depth_anything_3.cfg import create_object, load_config
    except ImportError as exc:
        raise ImportError(f"Depth Anything 3 needs the depth-anything-3 package ({exc.name}): {INSTALL}") from None
    return create_object(load_config(f"depth_anything_3.configs.{preset}"))


class _Hub(torch.nn.Module):
    """The package's `DepthAnything3` as far as its saved weights go: the network under `model`."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.model = net


def build_random(preset: str, folder: str, seed: int = 0) -> None:
    """A randomly initialised DA3 network of a real preset, saved in the hub layout (safetensors'
    `save_model`, as the hub mixin saves it: the heads share some tensors)."""
    from safetensors.torch import save_model

    torch.manual_seed(seed)
    net = _network(preset)
    with torch.no_grad():
        # Freshly initialised, the head's logits vary by under 1% across a frame, and the camera
        # head's field of view collapses to 0 (a focal length of 1e8 px): a test of such a model
        # would test little. Its last layers are rescaled so that depth and confidence vary by a
        # factor of e or so across a frame and the field of view is about 60 degrees.
        last = net.head.scratch.output_conv2[-1]
        last.weight.mul_(RANDOM_LOGIT_GAIN)
        last.bias.zero_()
        if net.cam_dec is not None:
            net.cam_dec.fc_fov[0].bias.add_(1.0)
    os.makedirs(folder, exist_ok=True)
    save_model(_Hub(net), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_name": preset}, f)


RANDOM_BUILDERS = {
    "da3-small": lambda folder: build_random("da3-small", folder),
    "da3-base": lambda folder: build_random("da3-base", folder),
}


def load_network(folder: str) -> tuple[str, torch.nn.Module]:
    """The preset and its network with the folder's weights, every key matched (else ValueError)."""
    from safetensors.torch import load_model

    with open(os.path.join(folder, "config.json")) as f:
        preset = check_preset(json.load(f))
    hub = _Hub(_network(preset))
    try:
        missing, unexpected = load_model(hub, os.path.join(folder, "model.safetensors"), strict=False)
    except RuntimeError as exc:  # tensors of other shapes: another preset's weights
        shapes = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
        raise ValueError(f"weights do not match Depth Anything 3 {preset} ({shapes[:200]})") from None
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ValueError(
            f"weights do not match Depth Anything 3 {preset} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys: {what})"
        )
    net = hub.model
    return preset, net.eval()


def longest_side(height: int, width: int, res: int = PROCESS_RES) -> tuple[int, int]:
    """(h, w) with the longest side `res`, rounded as the package rounds it."""
    scale = res / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] * size[1] < x.shape[-2] * x.shape[-1]:
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def processed_size(height: int, width: int, res: int = PROCESS_RES) -> tuple[int, int]:
    """(h, w) the package feeds its network for a frame: longest side to `res`, then each side
    rounded to the nearest multiple of 14 (ties upwards), as `upper_bound_resize` does."""
    h, w = longest_side(height, width, res)

    def nearest(x: int) -> int:
        down = (x // PATCH) * PATCH
        return down + PATCH if abs(down + PATCH - x) <= abs(x - down) else max(PATCH, down)

    return nearest(h), nearest(w)


class DA3Estimator:
    """A loaded DA3 checkpoint. `predict_codes(frames)` -> per frame (codes, scale, offset, extras),
    extras holding `depth_confidence` and `intrinsics` (None where the preset has none)."""

    def __init__(
        self, folder: str, device: str | None = None, precision: str = "fp32", compile: bool = False, **_ignored
    ):
        """`precision`: the autocast dtype (`enrich.ops.common.torch_dtype`); the weights stay fp32,
        and the package's heads turn autocast off for themselves, as its own `forward` runs them."""
        if compile:
            raise ValueError("--depth-compile is not supported for Depth Anything 3 yet")
        self.device = device or pick_device()
        self.dtype = torch_dtype(precision, self.device)
        self.preset, net = load_network(folder)
        self.kind = PRESETS[self.preset]
        self.model = net.to(self.device)
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Same-size RGB uint8 frames -> normalised float32 [B, 1, 3, h, w] on the model's device.

        The package's two resizes (longest side to 504, then sides to multiples of 14), each
        antialiased bilinear when it shrinks and bicubic when it enlarges, as OpenCV's INTER_AREA
        and INTER_CUBIC there; closer to it than one resize straight to the final size."""
        height, width = frames[0].shape[:2]
        pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        if self.device != "cpu":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        x = pixels.float() / 255.0
        for size in (longest_side(height, width), processed_size(height, width)):
            x = _resize(x, size)
        return ((x - self.mean) / self.std)[:, None]

    def forward(self, x: torch.Tensor):
        autocast = self.dtype != torch.float32
        with torch.autocast(device_type=x.device.type, dtype=self.dtype, enabled=autocast):
            return self.model(x)

    @torch.inference_mode()
    def predict_raw(self, frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The network's outputs at the processed size, for same-size frames: depth [B, h, w],
        depth_conf [B, h, w] and intrinsics [B, 3, 3] where the preset has them."""
        out = self.forward(self.preprocess(frames))
        return {k: out[k][:, 0].float() for k in ("depth", "depth_conf", "intrinsics") if k in out}

    @torch.inference_mode()
    def predict_codes(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, float, float, dict]]:
        return map_same_size(frames, lambda frame: frame.shape, self._codes)

    def _codes(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, float, float, dict]]:
        height, width = frames[0].shape[:2]
        raw = self.predict_raw(frames)
        depth = raw["depth"]
        h, w = depth.shape[-2:]
        full = F.interpolate(depth[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        codes, scales, offsets = quantize_batch(full)
        conf = raw["depth_conf"].flatten(1).median(dim=1).values.cpu().tolist() if "depth_conf" in raw else None
        intrinsics = None
        if "intrinsics" in raw:
            k = raw["intrinsics"]
            sx, sy = width / w, height / h
            intrinsics = torch.stack([k[:, 0, 0] * sx, k[:, 1, 1] * sy, k[:, 0, 2] * sx, k[:, 1, 2] * sy], 1)
            intrinsics = intrinsics.cpu().tolist()
        extras = [
            {
                "depth_confidence": None if conf is None else float(conf[i]),
                "intrinsics": None if intrinsics is None else dict(zip(INTRINSICS, intrinsics[i], strict=True)),
            }
            for i in range(len(frames))
        ]
        return list(zip(codes, scales, offsets, extras, strict=True))
