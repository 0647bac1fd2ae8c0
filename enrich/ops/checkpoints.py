"""What can be checked about a checkpoint without loading it, and so without torch: its config.json.

The driver runs these before any work. The weights themselves are checked where they load anyway,
in the model actors (`enrich.ops.common.load_checked`): the driver never loads a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping


def read_config(folder: str, role: str) -> dict:
    """The checkpoint's config.json, or ValueError naming `role` and the problem in one line."""
    path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise ValueError(f"{role} {folder}: no such folder")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{role} {folder}: not loadable ({str(error).strip().splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{role} {folder}: config.json is not an object")
    return config


def expect_model_type(folder: str, expected: str, role: str) -> dict:
    config = read_config(folder, role)
    if config.get("model_type") != expected:
        raise ValueError(f"{role} {folder}: expected model_type {expected!r}, got {config.get('model_type')!r}")
    return config


def person_label(id2label: Mapping) -> int:
    """The detector's class id for "person"; the pose model only makes sense on those boxes."""
    for label_id, name in id2label.items():
        if str(name).strip().lower() == "person":
            return int(label_id)
    raise ValueError(f"the detector has no 'person' class among its {len(id2label)} labels")


def detector_person(folder: str) -> int:
    """The "person" class of an RT-DETR checkpoint."""
    config = expect_model_type(folder, "rt_detr", "person detector")
    try:
        return person_label(config.get("id2label", {}))
    except ValueError as error:
        raise ValueError(f"person detector {folder}: {error}") from None


def attention(model_class, folder: str) -> str:
    """The attention kernel transformers picks for a checkpoint's attention layers ("sdpa", "eager",
    "flash_attention_2", ...), found by building the model on the meta device: no weights are read,
    and nothing is allocated."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class(config)
    layers = [module for module in model.modules() if type(module).__name__.endswith("Attention")]
    found = {getattr(getattr(layer, "config", None), "_attn_implementation", None) for layer in layers} - {None}
    return "/".join(sorted(found)) or "none"
