"""Depth: a pool of actors, each holding one Depth Anything checkpoint on its GPU (or CPU).

The model loads once per actor. Frames of one batch are predicted together; if the batch fails
(say, out of memory), its frames are retried one by one, so only the frames that really fail do.
"""

from __future__ import annotations


import numpy as np

from enrich.models import ModelRef, materialize
from enrich.ops.depth import RANDOM_BUILDERS, DepthEstimator
from enrich.stages.base import ERROR, Stage, column, ok_rows, per_item


# Frames per forward pass when not configured. On CPU a batch is slower per frame than single
# frames (measured 1.65-1.78 s vs 1.89-1.93 s per 480p frame, ViT-S, 2 cores); GPUs want batches.
DEFAULT_BATCH_SIZE = {"cpu": 1, "gpu": 16}


class Depth(Stage):
    name = "depth"
    inputs = ("frame", ERROR)
    outputs = ("depth", "depth_kind", ERROR)
    drops = ("frame",)

    def __init__(self, model: ModelRef, precision: str = "fp32", threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.estimator = DepthEstimator(materialize(model, RANDOM_BUILDERS), precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = ok_rows(batch)
        maps, errors = per_item(self.estimator.predict, [batch["frame"][i] for i in rows])
        depth = [np.zeros((0, 0), dtype=np.float32)] * len(batch[ERROR])
        failures = np.array(batch[ERROR], dtype=object)
        for i, depth_map, err in zip(rows, maps, errors):
            if err is None:
                depth[i] = depth_map
            else:
                failures[i] = f"depth: {err}"
        batch = {k: v for k, v in batch.items() if k not in self.drops}
        batch["depth"] = column(depth)
        batch["depth_kind"] = np.array([self.estimator.kind] * len(depth), dtype=object)
        batch[ERROR] = failures
        return batch
