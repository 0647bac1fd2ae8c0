"""What the model ops share: device and dtype choice, batching by frame size, and loading
transformers checkpoints only when their weights match their config."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(precision: str, device: str) -> torch.dtype:
    """The weights' and inputs' dtype. `auto`: bf16 on a GPU that has it (Ampere and later), else
    fp32; on CPU, bf16 where the CPU has AMX tiles (Depth Anything ViT-S ran 2.35x the fp32 frame
    rate on a 2-core Xeon with AMX, `benchmarks/precision.py`), else fp32 (AVX-512 BF16 alone is
    unmeasured). An explicit fp16 or bf16 is honoured on any device."""
    if precision != "auto":
        return DTYPES[precision]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_bf16() == "amx" else torch.float32


@functools.cache
def cpu_bf16() -> str:
    """This CPU's bf16 matrix support, from the kernel's CPU flags: `amx` (Intel AMX tiles),
    `avx512` (AVX-512 BF16 only), or `none` (or not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "none"
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512_bf16" in flags else "none"


def precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


# Input shapes one compiled model keeps graphs for (dynamo's default is 8): sizes of frames times
# the batch sizes `pad_batch` rounds to. Past it a model runs uncompiled for new shapes, with a warning.
COMPILED_SHAPES = 64


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """`torch.compile` with static shapes: one graph per input shape. Batches go through `pad_batch`
    first, so a clip's short last batch reuses a graph, and the graphs per frame size stay few."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, COMPILED_SHAPES)
    return torch.compile(model, dynamic=False)


def pad_batch(compiled: bool, *tensors: torch.Tensor, cap: int | None = None) -> tuple[int, tuple[torch.Tensor, ...]]:
    """The batch size, and the tensors padded along dim 0 to the next power of two, or to `cap` (the
    stage's batch size) if that is smaller, by repeating the last item. Only for a compiled model:
    1, 2, 4, 8 ... and the full batch are a few graphs per frame size."""
    n = tensors[0].shape[0]
    target = 1 << max(n - 1, 0).bit_length()
    if cap:
        target = min(target, max(cap, n))
    if not compiled or n == 0 or target == n:
        return n, tensors
    return n, tuple(torch.cat([t, t[-1:].expand(target - n, *t.shape[1:])]) for t in tensors)


def torch_processor(auto_class, folder: str):
    """The checkpoint's image processor with its torch (torchvision) backend, which takes tensors on
    any device: transformers 5's default; 4.x loads it with `use_fast=True`."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return auto_class.from_pretrained(folder)
    return auto_class.from_pretrained(folder, use_fast=True)


def map_same_size(items: Sequence[T], size_of: Callable[[T], Hashable], fn: Callable[[list[T]], list[Any]]) -> list:
    """`fn` once per group of items of one size (one batched pass each); results in input order."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[size_of(item)].append(i)
    results: list = [None] * len(items)
    for positions in groups.values():
        for i, result in zip(positions, fn([items[i] for i in positions]), strict=True):
            results[i] = result
    return results


def load_checked(model_class, folder: str, **kwargs):
    """`model_class.from_pretrained(folder, **kwargs)`, refusing a checkpoint whose weights do not
    match its config: transformers only warns about missing weights and would silently run a
    half-random model. Mismatched shapes are collected rather than raised, so the message names one.
    """
    try:
        model, info = model_class.from_pretrained(
            folder, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except (OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"weights not loadable ({str(error).strip().splitlines()[0]})") from None
    for problem in ("missing_keys", "mismatched_keys", "unexpected_keys"):
        if info.get(problem):
            first = sorted(info[problem], key=str)[0]
            raise ValueError(
                f"weights do not match the config ({len(info[problem])} {problem.replace('_', ' ')}, "
                f"e.g. {_describe(first)})"
            )
    return model


def _describe(entry) -> str:
    if isinstance(entry, tuple):  # a mismatched key: (name, saved shape, shape the config builds)
        name, saved, built = entry
        return f"{name} saved as {list(saved)}, config builds {list(built)}"
    return str(entry)
