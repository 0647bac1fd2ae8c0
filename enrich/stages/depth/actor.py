"""Depth: a pool of actors, each holding one Depth Anything checkpoint on its GPU (or CPU), then a
CPU stage that stores each map as a lossless 16-bit PNG with its decode formula.

The model loads once per actor. Frames of one batch are predicted together; if the batch fails
(say, out of memory), its frames are retried one by one, so only the frames that really fail do.
"""

from __future__ import annotations

import json

import numpy as np

from enrich.ops.checkpoints import expect_model_type, read_config
from enrich.ops.quantize import dequantize, encode_png16
from enrich.stages.base import (
    ERROR,
    Stage,
    column,
    lazy_builders,
    loading,
    ok_rows,
    predict_rows,
    use_threads,
)
from enrich.weights import ModelRef, materialize

# The smoke models the backends build (real architectures, random weights), named here so that
# resolving a spec on the driver does not import torch: Depth Anything V2 (`model.py`) and
# Depth Anything 3 (`da3.py`).
V2_RANDOM_MODELS = ("depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large")
DA3_RANDOM_MODELS = ("da3-small", "da3-base")
RANDOM_MODELS = V2_RANDOM_MODELS + DA3_RANDOM_MODELS
BACKENDS = {"transformers": "enrich.stages.depth.model", "da3": "enrich.stages.depth.da3"}


def _backend_module(name: str):
    """The model code, imported only where a model runs: the encoder's workers skip torch (~3 s)."""
    import importlib

    return importlib.import_module(BACKENDS[name])


RANDOM_BUILDERS = {
    **lazy_builders(V2_RANDOM_MODELS, lambda: _backend_module("transformers")),
    **lazy_builders(DA3_RANDOM_MODELS, lambda: _backend_module("da3")),
}


def backend_of(folder: str) -> str:
    """Which backend runs a checkpoint folder, from its config.json alone (no torch): transformers'
    Depth Anything (`model_type` depth_anything), or Depth Anything 3 (`model_name` da3-*).
    Raises ValueError with one line for anything else."""
    config = read_config(folder, "depth model")
    if str(config.get("model_name", "")).startswith("da3"):
        from enrich.stages.depth.da3_presets import check_preset

        check_preset(config)
        return "da3"
    expect_model_type(folder, "depth_anything", "depth model")
    return "transformers"


def load_estimator(folder: str, **options):
    """The estimator of the folder's backend: `predict_codes(frames)` and `kind`."""
    backend = backend_of(folder)
    module = _backend_module(backend)
    return module.DA3Estimator(folder, **options) if backend == "da3" else module.DepthEstimator(folder, **options)


class Depth(Stage):
    """The model, then `quantize` on its device: only the 16-bit codes of each map (and the scale
    and offset that decode them) leave the actor, half the bytes of the float maps. Depth Anything 3
    also gives each frame a confidence and the camera's intrinsics."""

    name = "depth"
    inputs = ("frame", ERROR)
    outputs = ("depth_codes", "depth_scale", "depth_offset", "depth_kind", "depth_confidence", "intrinsics", ERROR)

    def __init__(
        self,
        model: ModelRef,
        precision: str = "auto",
        compile: bool = False,
        threads: int | None = None,
        batch_size: int | None = None,
        drop=(),
    ):
        super().__init__(drop)
        use_threads(threads)
        with loading(f"depth model {model.spec}"):
            folder = materialize(model, RANDOM_BUILDERS)
            self.estimator = load_estimator(folder, precision=precision, compile=compile, batch_size=batch_size)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = ok_rows(batch)
        empty = (np.zeros((0, 0), dtype=np.uint16), np.nan, np.nan, {})
        found, failures = predict_rows(batch, rows, self._predict, [batch["frame"][i] for i in rows], empty, "depth")
        extras = [item[3] for item in found]
        intrinsics = [e.get("intrinsics") for e in extras]
        confidence = [e.get("depth_confidence") for e in extras]
        return {
            **batch,
            "depth_codes": column([item[0] for item in found]),
            "depth_scale": np.array([item[1] for item in found], dtype=np.float64),
            "depth_offset": np.array([item[2] for item in found], dtype=np.float64),
            "depth_kind": np.array([str(self.estimator.kind)] * len(found), dtype=object),
            "depth_confidence": np.array([np.nan if c is None else c for c in confidence], dtype=np.float64),
            "intrinsics": np.array(["" if k is None else json.dumps(k) for k in intrinsics], dtype=object),
            ERROR: failures,
        }

    def _predict(self, frames: list[np.ndarray]) -> list[tuple]:
        """(codes, scale, offset, extras) per frame, whichever backend."""
        return [item if len(item) == 4 else (*item, {}) for item in self.estimator.predict_codes(frames)]


DEPTH_COLUMNS = ("depth_codes", "depth_scale", "depth_offset")  # what a later stage reads for `depth_map`


def depth_map(batch: dict[str, np.ndarray], i: int) -> np.ndarray | None:
    """Row `i`'s depth as float32, NaN where the model gave none (the stored map, within half a code
    step of the model's output); None when the run has no depth or the row has none."""
    if "depth_codes" not in batch or not batch["depth_codes"][i].size:
        return None
    return dequantize(batch["depth_codes"][i], batch["depth_scale"][i], batch["depth_offset"][i])


class EncodeDepth(Stage):
    name = "encode-depth"
    inputs = ("depth_codes", ERROR)
    outputs = ("depth_png",)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pngs = np.array([b""] * len(batch[ERROR]), dtype=object)
        for i in ok_rows(batch):
            pngs[i] = encode_png16(batch["depth_codes"][i])
        return {**batch, "depth_png": pngs}
