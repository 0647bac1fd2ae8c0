"""Pose: a pool of actors each holding an RT-DETR person detector and a ViTPose model (top-down).

Each frame's people travel as JSON to the writer, which stores them as a nested Parquet column
(see `enrich.stages.pose.PERSON`): nested values of varying length do not survive Ray's
numpy batches reliably, while a string does.
"""

from __future__ import annotations

import json

import numpy as np

from enrich.ops.checkpoints import attention, detector_person, expect_model_type
from enrich.stages.base import (
    ERROR,
    PerThread,
    Stage,
    lazy_builders,
    loading,
    ok_rows,
    predict_rows,
    use_threads,
)
from enrich.weights import ModelRef, materialize

# The smoke models `model.py` builds, named here so that resolving does not import torch.
RANDOM_MODELS = ("vitpose-tiny", "vitpose-base", "rtdetr-tiny", "rtdetr-r50")


def _ops():
    """The model code, imported only where a model runs (torch takes ~3 s to import)."""
    from enrich.stages.pose import model

    return model


RANDOM_BUILDERS = lazy_builders(RANDOM_MODELS, _ops)


class Pose(Stage):
    name = "pose"
    inputs = ("frame", ERROR)
    outputs = ("pose", ERROR)

    def __init__(
        self,
        model: ModelRef,
        detector: ModelRef,
        threshold: float = 0.5,
        precision: str = "fp32",
        compile: bool = False,
        threads: int | None = None,
        batch_size: int | None = None,  # frames per call; ViTPose's own batches are its crop chunks
        drop=(),
    ):
        super().__init__(drop)
        use_threads(threads)
        ops = _ops()
        folders = materialize(model, RANDOM_BUILDERS), materialize(detector, RANDOM_BUILDERS)
        # A copy per concurrent call: two transformers models, not checked for state kept between calls.
        options = dict(threshold=threshold, precision=precision, compile=compile)
        self.estimator = PerThread(lambda: ops.PoseEstimator(*folders, **options))
        with loading(f"pose model {model.spec}"):
            self.estimator.get()  # load (and fail) at actor start, not on the first frame

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = ok_rows(batch)
        people, failures = predict_rows(
            batch, rows, self.estimator.get().predict, [batch["frame"][i] for i in rows], None, "pose"
        )
        # "" where it failed: an all-None column (a block of failed rows) would be typed float by Ray
        pose = np.array(["" if found is None else json.dumps(found) for found in people], dtype=object)
        return {**batch, "pose": pose, ERROR: failures}


def check_models(refs: dict[str, ModelRef]) -> None:
    expect_model_type(materialize(refs["model"], RANDOM_BUILDERS), "vitpose", "pose model")
    detector_person(materialize(refs["detector"], RANDOM_BUILDERS))


def attention_of(refs: dict[str, ModelRef]) -> str:
    from transformers import RTDetrForObjectDetection, VitPoseForPoseEstimation

    pose, detector = (materialize(refs[role], RANDOM_BUILDERS) for role in ("model", "detector"))
    kernels = attention(VitPoseForPoseEstimation, pose), attention(RTDetrForObjectDetection, detector)
    return "attention ViTPose {}, RT-DETR {}".format(*kernels)
