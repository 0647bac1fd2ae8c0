"""Optical flow with torchvision's RAFT, batched.

Preprocessing is the weights' own `transforms()` preset and the flow is the last of the model's
iterative predictions, exactly torchvision's reference usage. RAFT cannot take every size, so inputs
are padded (never resized) and the flow cropped back, which keeps it in pixels of the original frame.
Batching only groups pairs of the same size, so every pair gets exactly the padding it would get alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from enrich.ops.common import compile_model, map_same_size, pad_batch, pick_device
from enrich.stages.flow import FlowConfig

# Features are at 1/8 resolution and the correlation pyramid halves them 3 more times (4 levels);
# torchvision's CorrBlock needs >= 2 cells at the coarsest level, i.e. feature maps of >= 16.
_STRIDE = 8
_MIN_SIZE = _STRIDE * 2 * 2 ** (4 - 1)  # 128 px


def _arch(arch: str):
    """The torchvision builder and weights enum of an architecture name."""
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small

    builders = {"raft_large": (raft_large, Raft_Large_Weights), "raft_small": (raft_small, Raft_Small_Weights)}
    if arch not in builders:
        raise ValueError(f"unknown RAFT architecture {arch!r}; expected one of {', '.join(builders)}")
    return builders[arch]


def build_random(arch: str, path: str, seed: int = 0) -> None:
    """Save a seeded, randomly initialised state dict of the real architecture, for smoke runs and tests."""
    builder, _ = _arch(arch)
    torch.manual_seed(seed)
    torch.save(builder(weights=None).state_dict(), path)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"RAFT weights not found: {path}") from None
    except Exception as error:  # torch.load raises many kinds for a file that is not a state dict
        raise ValueError(f"cannot read RAFT weights {path} as a state dict: {_first_sentence(error)}") from None
    if not isinstance(state, dict):
        raise ValueError(f"RAFT weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def _first_sentence(error: Exception) -> str:
    """The cause of a torch.load failure in one line, without its paragraphs of weights_only advice."""
    text = str(error)
    detail = (text.partition("WeightsUnpickler error:")[2] or text).strip()
    return type(error).__name__ + (": " + detail.splitlines()[0].split(". ")[0] if detail else "")


def load_raft(arch: str, weights: str | None) -> torch.nn.Module:
    """`weights=None`: torchvision's published DEFAULT weights (torch hub cache); else a local state dict."""
    builder, weights_enum = _arch(arch)
    if weights is None:
        return builder(weights=weights_enum.DEFAULT, progress=False).eval()
    model = builder(weights=None)
    state = _read_state_dict(weights)
    _refuse_mismatch(arch, weights, state, model)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _refuse_mismatch(arch: str, weights: str, state: dict, model: torch.nn.Module) -> None:
    """One line for a state dict of another architecture or size (load_state_dict lists every key)."""
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(name for name in set(expected) & set(state) if tuple(state[name].shape) != expected[name])
    problems = {"missing": missing, "unexpected": unexpected, "wrong shape": wrong_shape}
    if any(problems.values()):
        example = next(f"{kind} {names[0]!r}" for kind, names in problems.items() if names)
        raise ValueError(
            f"RAFT weights {weights} do not match {arch}: {len(missing)} keys missing, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} with the wrong shape (e.g. {example})"
        )


def _padding(size: int) -> tuple[int, int]:
    """(before, after) to reach a multiple of 8 and at least the minimum, split evenly like RAFT's InputPadder."""
    total = max(-(-size // _STRIDE) * _STRIDE, _MIN_SIZE) - size
    return total // 2, total - total // 2


class FlowEstimator:
    """A loaded RAFT: `predict(pairs)` returns forward flow at each pair's original size."""

    def __init__(
        self,
        arch: str,
        weights: str | None,
        device: str | None = None,
        num_updates: int = 12,
        precision: str = "auto",
        compile: bool = False,
        batch_size: int | None = None,
    ):
        """`precision`: fp32 weights always; `bf16` runs the forward pass under bf16 autocast; `auto`
        on CUDA lets float32 matmuls and convolutions use TF32 (a process-wide setting: each model
        actor is its own process); `fp32` is strict fp32. `compile`: see `enrich.ops.common.compile_model`
        (batches padded up to at most `batch_size`, the stage's)."""
        if precision not in FlowConfig.precisions:
            raise ValueError(f"RAFT precision must be one of {', '.join(FlowConfig.precisions)}, got {precision!r}")
        _, weights_enum = _arch(arch)
        self.device = device or pick_device()
        self.num_updates = num_updates
        self.transforms = weights_enum.DEFAULT.transforms()
        self.model = load_raft(arch, weights).to(self.device)
        self.compiled, self.batch_size = compile, batch_size
        self.forward = compile_model(self.model) if compile else self.model
        self.autocast = precision == "bf16"
        if self.device.startswith("cuda"):
            tf32 = precision == "auto"
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            torch.backends.cudnn.allow_tf32 = tf32

    @torch.inference_mode()
    def predict(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """(frame_t, frame_t+1) RGB uint8 [H, W, 3] pairs -> float32 [H, W, 2] flow (u, v in px), in input order."""
        for i, (first, second) in enumerate(pairs):
            if first.shape != second.shape or first.ndim != 3 or first.shape[2] != 3:
                raise ValueError(f"pair {i}: expected two RGB frames of one size, got {first.shape} and {second.shape}")
        return map_same_size(pairs, lambda pair: pair[0].shape, self._predict_same_size)

    def _on_device(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> uint8 [N, 3, H, W] on the model's device, copied from pinned memory
        without blocking (the copy overlaps the work queued before it)."""
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return pixels.pin_memory().to(self.device, non_blocking=True) if self.device != "cpu" else pixels

    def _predict_same_size(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        height, width = pairs[0][0].shape[:2]
        images = [self._on_device(np.stack(frames)) for frames in zip(*pairs, strict=True)]
        first, second = self.transforms(*images)
        top, bottom = _padding(height)
        left, right = _padding(width)
        # Replicate padding commutes with the preset's per-pixel normalisation, so padding after it is the same.
        first, second = (F.pad(image, (left, right, top, bottom), mode="replicate") for image in (first, second))
        n, (first, second) = pad_batch(self.compiled, first, second, cap=self.batch_size)
        with torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.autocast):
            flow = self.forward(first, second, num_flow_updates=self.num_updates)[-1][:n].float()
        flow = flow[:, :, top : top + height, left : left + width].permute(0, 2, 3, 1).contiguous()
        return list(flow.cpu().numpy())
