"""Depth: Depth Anything V1 and V2 (relative and metric) and Depth Anything 3, as one stage.

  actor.py         the actor holding a checkpoint, and the CPU encoder storing each map as a 16-bit PNG
  model.py         V1/V2 through transformers (torch): preprocess, predict, quantise on the device
  da3.py           Depth Anything 3 through the depth-anything-3 package's network (torch)
  da3_presets.py   the DA3 presets enrich runs (light: the driver checks checkpoints with it)

This module declares the stage (`STAGE`): its config section, checkpoints, flags and columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich.licences import OWN_LICENCE, KnownModel
from enrich.ops.checkpoints import attention
from enrich.stages.depth.actor import (
    DEPTH_COLUMNS,
    RANDOM_BUILDERS,
    RANDOM_MODELS,
    Depth,
    EncodeDepth,
    backend_of,
    depth_map,
)
from enrich.stages.spec import Column, Flag, ModelStage, StageConfig, smoke
from enrich.weights import ModelRef, materialize, resolve

__all__ = ["DEPTH_COLUMNS", "STAGE", "DepthConfig", "depth_map"]

DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
# Frames per forward pass when not configured. On CPU a batch is slower per frame than single
# frames (measured 1.65-1.78 s vs 1.89-1.93 s per 480p frame, ViT-S, 2 cores); GPUs want batches.
DEFAULT_BATCH_SIZE = {"cpu": 1, "gpu": 16}


@dataclass(frozen=True)
class DepthConfig(StageConfig):
    model: str = DEFAULT_MODEL  # hub id, local save_pretrained folder, s3:// prefix, or random:NAME


_DA = "depth-anything/Depth-Anything-V2"
_INDOOR = "V2 metric, indoor: Hypersim, 0-20 m"
_OUTDOOR = "V2 metric, outdoor: Virtual KITTI 2, 0-80 m"
_DA3 = "DA3 any-view: relative depth, confidence, intrinsics"
CHECKPOINTS = (
    # Depth Anything V2 (relative): Small is Apache-2.0, Base and Large CC-BY-NC-4.0 (the upstream
    # repository's LICENSE section and the transformers model doc).
    KnownModel("depth", f"{_DA}-Small-hf", "Apache-2.0", "default; V2 relative"),
    KnownModel("depth", f"{_DA}-Base-hf", "CC-BY-NC-4.0", "V2 relative"),
    KnownModel("depth", f"{_DA}-Large-hf", "CC-BY-NC-4.0", "V2 relative"),
    # Depth Anything V2 metric: fine-tuned from the V2 models of the same size, whose licences they keep.
    # (Some of the -hf ports' hub pages carry an apache-2.0 tag, others none: listed as upstream licenses
    # the model they were fine-tuned from, the cautious reading.)
    KnownModel("depth", f"{_DA}-Metric-Indoor-Small-hf", "Apache-2.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Indoor-Base-hf", "CC-BY-NC-4.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Indoor-Large-hf", "CC-BY-NC-4.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Small-hf", "Apache-2.0", _OUTDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Base-hf", "CC-BY-NC-4.0", _OUTDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Large-hf", "CC-BY-NC-4.0", _OUTDOOR),
    # Depth Anything V1: every size Apache-2.0.
    KnownModel("depth", "LiheYoung/depth-anything-small-hf", "Apache-2.0", "V1 relative"),
    KnownModel("depth", "LiheYoung/depth-anything-base-hf", "Apache-2.0", "V1 relative"),
    KnownModel("depth", "LiheYoung/depth-anything-large-hf", "Apache-2.0", "V1 relative"),
    # Depth Anything 3 (depth-anything-3 package, installed apart: README): Small and Base are
    # Apache-2.0, Large and Giant CC-BY-NC-4.0 (the upstream repository's model table).
    KnownModel("depth", "depth-anything/DA3-SMALL", "Apache-2.0", _DA3),
    KnownModel("depth", "depth-anything/DA3-BASE", "Apache-2.0", _DA3),
    KnownModel("depth", "depth-anything/DA3-LARGE", "CC-BY-NC-4.0", _DA3),
    KnownModel("depth", "depth-anything/DA3-GIANT", "CC-BY-NC-4.0", _DA3),
)

INTRINSICS = pa.struct([(name, pa.float32()) for name in ("fx", "fy", "cx", "cy")])
COLUMNS = (
    Column("depth_png", pa.binary(), "single-channel 16-bit PNG, width x height"),
    Column("depth_kind", pa.string(), "what the values are: enrich.manifest.kinds.DepthKind"),
    Column("depth_scale", pa.float64(), "value = png * depth_scale + depth_offset; png 0 = no value"),
    Column("depth_offset", pa.float64(), "see depth_scale"),
    Column(
        "depth_confidence",
        pa.float32(),
        "median of the model's confidence map (Depth Anything 3 any-view; null for the others)",
        empty_is_null=True,
    ),
    Column(
        "intrinsics",
        INTRINSICS,
        "the camera's fx, fy, cx, cy in the frame's pixels, as the model estimates them (DA3 any-view)",
        json=True,
    ),
)


def _check(refs: dict[str, ModelRef]) -> None:
    backend_of(materialize(refs["model"], RANDOM_BUILDERS))


def _attention(refs: dict[str, ModelRef]) -> str:
    folder = materialize(refs["model"], RANDOM_BUILDERS)
    if backend_of(folder) == "da3":
        return "attention: the depth-anything-3 package's own"
    from transformers import AutoModelForDepthEstimation

    return f"attention {attention(AutoModelForDepthEstimation, folder)}"


STAGE = ModelStage(
    name="depth",
    config=DepthConfig,
    actor=Depth,
    encoder=EncodeDepth,
    resolve=lambda cfg: {"model": resolve(cfg.model, RANDOM_MODELS)},
    check=_check,
    attention=_attention,
    actor_kwargs=lambda cfg, refs: dict(model=refs["model"], precision=cfg.precision, compile=cfg.compile),
    default_batch=DEFAULT_BATCH_SIZE,
    columns=COLUMNS,
    models=(
        *CHECKPOINTS,
        *smoke("depth", RANDOM_MODELS),
        KnownModel(
            "depth", "PATH | s3://PREFIX", OWN_LICENCE, "local path forms: a save_pretrained folder, local or s3://"
        ),
    ),
    flags=(
        Flag(
            "--depth-model",
            "model",
            "Depth Anything V1/V2 or 3: a hub id, a local folder (save_pretrained, or DA3's hub layout) or "
            "an s3:// prefix; random:depth-anything-v2-small or random:da3-small for smoke runs "
            f"(default: {DEFAULT_MODEL})",
        ),
    ),
)
