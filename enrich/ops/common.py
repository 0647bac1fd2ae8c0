"""What the model ops share: device and dtype choice, batching by frame size, and loading
transformers checkpoints only when their weights match their config."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(precision: str, device: str) -> torch.dtype:
    """fp16/bf16 on CUDA only: half precision on CPU is slower and less accurate."""
    if device == "cpu":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


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
