"""Temporal: the clip-level stage. Its per-frame half (`Summarize`) runs in the pipeline, where each
frame's full-size outputs are at hand; its clip half (`FinishClip`) runs when all of a clip's rows
are in (at commit, in frame order), on those small summaries only.

However the frames were split into blocks, batches and actors, at commit the clip is whole: shots
are found from the thumbnails, relative depth is made consistent along each shot by rewriting each
frame's `depth_scale` / `depth_offset` (the PNG is untouched, so the decode formula stays the same),
and `depth_flicker`, the clip's flicker figures and its flag rates are filled in. The commit never
decodes a depth or flow PNG, so its memory does not grow with the clip's resolution, and only with
its length by a few tens of kB a frame.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from enrich.config import AuditConfig, TemporalConfig
from enrich.manifest.kinds import kind_of
from enrich.manifest.schema import AUDIT, FLAG_NAMES, FLAGS
from enrich.ops import temporal as ops
from enrich.ops.flowpng import storable
from enrich.stages.base import ERROR, Stage, column, ok_rows
from enrich.stages.depth import DEPTH_COLUMNS, depth_map

_NONE = np.zeros((0, 0), np.float32)


class Summarize(Stage):
    """Each frame's depth and forward flow shrunk to `ops.SMALL_SIDE`: what `FinishClip` aligns.
    Staged with the frame's rows, never published."""

    name = "summary"
    inputs = (*DEPTH_COLUMNS, "flow", ERROR)
    outputs = ("depth_small", "flow_small")

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[ERROR])
        depths, flows = [_NONE] * n, [_NONE] * n
        for i in ok_rows(batch):
            depth = depth_map(batch, i)
            if depth is not None:
                depths[i] = ops.small_map(depth)
            if "flow" in batch and batch["flow"][i].size:
                flow = batch["flow"][i]
                flows[i] = ops.small_flow(flow, storable(flow), ops.small_shape(*flow.shape[:2]))
        return {**batch, "depth_small": column(depths), "flow_small": column(flows)}


class FinishClip:
    """One clip's per-frame summaries, sorted by frame -> (the columns it rewrites, clip figures for
    the clips table)."""

    reads = (
        "width",
        "height",
        "thumb_jpeg",
        "audit",
        "flags",
        "depth_kind",
        "depth_scale",
        "depth_offset",
        "depth_small",
        "flow_small",
    )
    writes = ("depth_scale", "depth_offset", "segment", "audit", "flags")

    def __init__(self, temporal: TemporalConfig | None = None, audit: AuditConfig | None = None):
        self.temporal, self.audit = temporal or TemporalConfig(), audit or AuditConfig()

    def __call__(self, summary: pa.Table) -> tuple[dict[str, pa.Array], dict]:
        small = [c for c in self.reads if c.endswith("_small")]
        rows = summary.select([c for c in self.reads if c not in small]).to_pylist()
        for name in small:  # thousands of floats a frame: as numpy, not as Python lists
            for row, value in zip(rows, summary[name].combine_chunks(), strict=True):
                row[name] = value.values.to_numpy() if value.is_valid else None
        n = len(rows)
        signatures = [ops.signature(thumb_rgb(r["thumb_jpeg"])) for r in rows]
        segments, cut_distance = ops.segments_from_cuts(signatures, self.temporal.cut_threshold)
        audits = [dict(r["audit"] or {}) for r in rows]
        flags = [dict(r["flags"] or {}) for r in rows]
        for t in range(n):
            audits[t]["cut_distance"] = _num(cut_distance[t])
        columns: dict[str, pa.Array] = {}
        before = after = None
        if n and all(r["depth_small"] is not None for r in rows):
            relative = all(kind_of(r["depth_kind"]).alignable for r in rows)
            shape = ops.small_shape(rows[0]["height"], rows[0]["width"])
            maps = [_unflatten(r["depth_small"], shape) for r in rows]
            flows = [None if r["flow_small"] is None else _unflatten(r["flow_small"], (*shape, 2)) for r in rows]
            mode = self.temporal.mode if relative else "off"  # metric depth is already absolute
            c = ops.make_consistent(maps, flows, segments, mode, self.temporal.sigma)
            scales = [float(c.scale[t] * rows[t]["depth_scale"]) for t in range(n)]
            offsets = [float(c.scale[t] * rows[t]["depth_offset"] + c.shift[t]) for t in range(n)]
            columns["depth_scale"] = pa.array(scales, pa.float64())
            columns["depth_offset"] = pa.array(offsets, pa.float64())
            for t in range(n):
                audits[t]["flicker"], audits[t]["flicker_raw"] = _num(c.flicker_after[t]), _num(c.flicker_before[t])
                flicker = audits[t]["flicker"]
                flags[t]["depth_flicker"] = None if flicker is None else flicker > self.audit.flicker
            before, after = _mean(c.flicker_before), _mean(c.flicker_after)
        columns["segment"] = pa.array(segments, pa.int32())
        columns["audit"] = pa.array(audits, AUDIT)
        columns["flags"] = pa.array(flags, FLAGS)
        figures = {
            "segments": int(segments.max()) + 1 if n else 0,
            "flicker_before": before,
            "flicker_after": after,
            "flag_rates": {name: _rate([f.get(name) for f in flags]) for name in FLAG_NAMES},
        }
        return columns, figures


def thumb_rgb(data: bytes | None) -> np.ndarray:
    """A stored thumbnail (`thumb_jpeg`) as RGB: what shots are found from."""
    if not data:
        return np.zeros((1, 1, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _unflatten(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return values.astype(np.float32, copy=False).reshape(shape)


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _rate(values: list[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
