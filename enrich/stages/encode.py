"""Encode: float depth maps into lossless 16-bit PNGs with their decode formula (CPU tasks)."""

from __future__ import annotations

import numpy as np

from enrich.ops.quantize import encode_png16, quantize
from enrich.stages.base import ERROR, Stage, ok_rows


class Encode(Stage):
    name = "encode"
    inputs = ("depth", ERROR)
    outputs = ("depth_png", "depth_scale", "depth_offset")
    drops = ("depth",)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[ERROR])
        pngs = np.array([b""] * n, dtype=object)
        scales = np.full(n, np.nan)
        offsets = np.full(n, np.nan)
        for i in ok_rows(batch):
            codes, scales[i], offsets[i] = quantize(batch["depth"][i])
            pngs[i] = encode_png16(codes)
        batch = {k: v for k, v in batch.items() if k not in self.drops}
        batch.update(depth_png=pngs, depth_scale=scales, depth_offset=offsets)
        return batch
