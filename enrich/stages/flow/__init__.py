"""Optical flow: torchvision's RAFT on each sampled frame and its successor, as one stage.

  actor.py   the actor (forward and backward flow per pair), and the CPU encoder to KITTI PNGs
  model.py   the model code (torch): RAFT loaded and checked, padding, batches, precision

This module declares the stage (`STAGE`): its config section, checkpoints, flags and columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich.licences import OWN_LICENCE, KnownModel
from enrich.stages.flow.actor import ARCHS, EncodeFlow, Flow, check_weights, resolve_flow
from enrich.stages.spec import Column, Flag, ModelStage, StageConfig, check, positive, smoke

__all__ = ["ARCHS", "STAGE", "FlowConfig"]

DEFAULT_MODEL = "raft_large"
# RAFT's correlation volume grows as (H*W/64)^2 per pair: about 5.7 GB at 1080p in fp32.
DEFAULT_BATCH_SIZE = {"cpu": 1, "gpu": 2}


@dataclass(frozen=True)
class FlowConfig(StageConfig):
    precisions = ("auto", "fp32", "bf16")
    precision_why = " (fp16 would overflow RAFT's correlation volume)"
    precision_help = "auto (default): fp32 with TF32 on CUDA; bf16: autocast"

    model: str = DEFAULT_MODEL  # raft_large | raft_small [:PATH to a state dict, local or s3://] | random:ARCH
    updates: int = 12  # RAFT refinement iterations (torchvision's default)
    backward: bool = True  # also frame t+1 -> t, for the flow_inconsistent audit (doubles RAFT's work)

    def validate(self, name: str) -> None:
        positive(self.updates, "--flow-updates", int)
        check(isinstance(self.backward, bool), f"flow_backward must be true or false, got {self.backward!r}")


_STATE_DICT = "a RAFT state dict, local or s3://; ARCH: a RAFT id above"

STAGE = ModelStage(
    name="flow",
    config=FlowConfig,
    actor=Flow,
    encoder=EncodeFlow,
    resolve=lambda cfg: {"model": resolve_flow(cfg.model)},
    check=check_weights,
    actor_kwargs=lambda cfg, refs: dict(
        model=refs["model"], updates=cfg.updates, backward=cfg.backward, precision=cfg.precision, compile=cfg.compile
    ),
    default_batch=DEFAULT_BATCH_SIZE,
    reads_pairs=True,
    columns=(
        Column(
            "flow_png",
            pa.binary(),
            "KITTI: 16-bit RGB PNG, u v valid; flow = (png - 2**15) / 64; null: no next frame",
            empty_is_null=True,
        ),
    ),
    models=(
        KnownModel("flow", "raft_large", "BSD-3-Clause", "default; torchvision's weights"),
        KnownModel("flow", "raft_small", "BSD-3-Clause", "torchvision's weights"),
        *smoke("flow", ARCHS),
        KnownModel("flow", "ARCH:PATH", OWN_LICENCE, f"local path forms: {_STATE_DICT}"),
    ),
    flags=(
        Flag(
            "--flow-model",
            "model",
            "raft_large or raft_small (torchvision's weights), ARCH:PATH for a state dict (local or s3://), "
            f"random:raft_small for smoke runs (default: {DEFAULT_MODEL})",
        ),
        Flag("--flow-updates", "updates", "RAFT iterations (default: 12)", dict(type=int)),
        Flag(
            "--no-flow-backward",
            "backward",
            "skip the backward flow (halves RAFT's work; no flow_inconsistent audit)",
            dict(action="store_false"),
        ),
    ),
)
