"""Human pose: ViTPose on the people an RT-DETR detector finds (top-down), as one stage.

  actor.py   the actor holding both models; people travel to the writer as JSON
  model.py   the model code (torch, transformers): detect, crop on the device, estimate keypoints

This module declares the stage (`STAGE`): its config section, checkpoints, flags and columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich.licences import OWN_LICENCE, KnownModel
from enrich.stages.pose.actor import RANDOM_MODELS, Pose, attention_of, check_models
from enrich.stages.spec import Column, Flag, ModelStage, StageConfig, check, smoke
from enrich.weights import resolve

__all__ = ["PERSON", "STAGE", "PoseConfig"]

DEFAULT_MODEL = "usyd-community/vitpose-base-simple"
DEFAULT_DETECTOR_MODEL = "PekingU/rtdetr_r50vd_coco_o365"
DEFAULT_BATCH_SIZE = {"cpu": 1, "gpu": 8}


@dataclass(frozen=True)
class PoseConfig(StageConfig):
    model: str = DEFAULT_MODEL  # ViTPose: hub id, local folder, s3:// prefix, or random:NAME
    detector_model: str = DEFAULT_DETECTOR_MODEL  # RT-DETR person detector, same forms
    detector_threshold: float = 0.5  # minimum person score

    speed_fields = StageConfig.speed_fields | {"detector_model"}  # hashed as its pinned id

    def validate(self, name: str) -> None:
        t = self.detector_threshold
        check(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1,
            f"--detector-threshold must be between 0 and 1, got {t!r}",
        )
        check(isinstance(self.detector_model, str) and bool(self.detector_model.strip()),
              "--detector-model must not be empty")  # fmt: skip


KEYPOINT = pa.struct([("x", pa.float32()), ("y", pa.float32()), ("score", pa.float32())])
PERSON = pa.struct(
    [
        ("bbox", pa.list_(pa.float32())),  # x, y, w, h in original-frame pixels (Delta has no fixed-size lists)
        ("score", pa.float32()),  # detector score
        ("keypoints", pa.list_(KEYPOINT)),  # 17, COCO order, original-frame pixels
    ]
)
_FOLDER = "local path forms: a save_pretrained folder, local or s3://"

STAGE = ModelStage(
    name="pose",
    config=PoseConfig,
    actor=Pose,
    encoder=None,
    resolve=lambda cfg: {
        "model": resolve(cfg.model, RANDOM_MODELS),
        "detector": resolve(cfg.detector_model, RANDOM_MODELS),
    },
    check=check_models,
    attention=attention_of,
    actor_kwargs=lambda cfg, refs: dict(
        model=refs["model"],
        detector=refs["detector"],
        threshold=cfg.detector_threshold,
        precision=cfg.precision,
        compile=cfg.compile,
    ),
    default_batch=DEFAULT_BATCH_SIZE,
    columns=(
        Column(
            "pose",
            pa.list_(PERSON),
            "people found: bbox x, y, w, h and 17 COCO keypoints, frame pixels; [] when nobody",
            json=True,
        ),
    ),
    models=(
        KnownModel("pose", DEFAULT_MODEL, "Apache-2.0", "default"),
        # Both pose models resolve against one tuple; the RT-DETR ones are the person detectors.
        *smoke("pose", tuple(n for n in RANDOM_MODELS if not n.startswith("rtdetr"))),
        KnownModel("pose", "PATH | s3://PREFIX", OWN_LICENCE, _FOLDER),
        KnownModel("pose detector", DEFAULT_DETECTOR_MODEL, "Apache-2.0", "default"),
        *smoke("pose detector", tuple(n for n in RANDOM_MODELS if n.startswith("rtdetr"))),
        KnownModel("pose detector", "PATH | s3://PREFIX", OWN_LICENCE, _FOLDER),
    ),
    flags=(
        Flag(
            "--pose-model",
            "model",
            f"ViTPose: a hub id, a local save_pretrained folder or an s3:// prefix (default: {DEFAULT_MODEL})",
        ),  # fmt: skip
        Flag(
            "--detector-model",
            "detector_model",
            f"RT-DETR person detector: the same forms (default: {DEFAULT_DETECTOR_MODEL})",
        ),
        Flag("--detector-threshold", "detector_threshold", "minimum person score (default: 0.5)", dict(type=float)),
    ),
)
