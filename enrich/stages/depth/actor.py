"""Depth: a pool of actors, each holding one Depth Anything checkpoint on its GPU (or CPU), then a
CPU stage that stores each map as a lossless 16-bit PNG with its decode formula.

The model loads once per actor. Frames of one batch are predicted together; if the batch fails
(say, out of memory), its frames are retried one by one, so only the frames that really fail do.
"""

from __future__ import annotations

import numpy as np

from enrich.models import ModelRef, materialize
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

# The smoke models `model.py` builds (real architectures, random weights), named here so
# that resolving a spec on the driver does not import torch.
RANDOM_MODELS = ("depth-anything-v2-small", "depth-anything-v2-base", "depth-anything-v2-large")


def _ops():
    """The model code, imported only where a model runs: the encoder's workers skip torch (~3 s)."""
    from enrich.stages.depth import model

    return model


RANDOM_BUILDERS = lazy_builders(RANDOM_MODELS, _ops)


class Depth(Stage):
    """The model, then `quantize` on its device: only the 16-bit codes of each map (and the scale
    and offset that decode them) leave the actor, half the bytes of the float maps."""

    name = "depth"
    inputs = ("frame", ERROR)
    outputs = ("depth_codes", "depth_scale", "depth_offset", "depth_kind", ERROR)

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
            self.estimator = _ops().DepthEstimator(folder, precision=precision, compile=compile, batch_size=batch_size)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = ok_rows(batch)
        empty = (np.zeros((0, 0), dtype=np.uint16), np.nan, np.nan)
        found, failures = predict_rows(
            batch, rows, self.estimator.predict_codes, [batch["frame"][i] for i in rows], empty, "depth"
        )
        kinds = np.array([self.estimator.kind] * len(found), dtype=object)
        return {
            **batch,
            "depth_codes": column([codes for codes, _, _ in found]),
            "depth_scale": np.array([scale for _, scale, _ in found], dtype=np.float64),
            "depth_offset": np.array([offset for _, _, offset in found], dtype=np.float64),
            "depth_kind": kinds,
            ERROR: failures,
        }


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
