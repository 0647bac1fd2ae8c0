"""Temporal: the clip-level stage, run when all of a clip's rows are in (at commit, in frame order).

However the frames were split into blocks, batches and actors, here the clip is whole: shots are
found from the thumbnails, relative depth is made consistent along each shot by rewriting each
frame's `depth_scale` / `depth_offset` (the PNG is untouched, so the decode formula stays the same),
and `depth_flicker`, the clip's flicker figures and its flag rates are filled in.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from enrich.config import AuditConfig, TemporalConfig
from enrich.manifest.schema import AUDIT, FLAG_NAMES, FLAGS
from enrich.ops import temporal as ops
from enrich.ops.flowpng import decode_flow_png
from enrich.ops.quantize import decode_png16, dequantize


class FinishClip:
    """`table` (one clip's rows, sorted by frame) -> (table, clip figures for the clips table)."""

    def __init__(self, temporal: TemporalConfig | None = None, audit: AuditConfig | None = None):
        self.temporal, self.audit = temporal or TemporalConfig(), audit or AuditConfig()

    def __call__(self, table: pa.Table) -> tuple[pa.Table, dict]:
        needed = ["thumb_jpeg", "audit", "flags", "depth_png", "depth_scale", "depth_offset", "depth_kind", "flow_png"]
        rows = table.select(needed).to_pylist()
        n = len(rows)
        signatures = [ops.signature(_thumb(r["thumb_jpeg"])) for r in rows]
        segments, cut_distance = ops.segments_from_cuts(signatures, self.temporal.cut_threshold)
        audits = [dict(r["audit"] or {}) for r in rows]
        flags = [dict(r["flags"] or {}) for r in rows]
        for t in range(n):
            audits[t]["cut_distance"] = _num(cut_distance[t])
        before = after = None
        if n and all(r["depth_png"] is not None for r in rows):
            relative = all(r["depth_kind"] == "relative_disparity" for r in rows)
            maps = [
                ops.small_map(dequantize(decode_png16(r["depth_png"]), r["depth_scale"], r["depth_offset"]))
                for r in rows
            ]
            flows = [_small_flow(r["flow_png"], maps[0].shape) for r in rows]
            mode = self.temporal.mode if relative else "off"  # metric depth is already absolute
            c = ops.make_consistent(maps, flows, segments, mode, self.temporal.sigma)
            scales = [float(c.scale[t] * rows[t]["depth_scale"]) for t in range(n)]
            offsets = [float(c.scale[t] * rows[t]["depth_offset"] + c.shift[t]) for t in range(n)]
            table = _replace(table, "depth_scale", pa.array(scales, pa.float64()))
            table = _replace(table, "depth_offset", pa.array(offsets, pa.float64()))
            for t in range(n):
                audits[t]["flicker"], audits[t]["flicker_raw"] = _num(c.flicker_after[t]), _num(c.flicker_before[t])
                flicker = audits[t]["flicker"]
                flags[t]["depth_flicker"] = None if flicker is None else flicker > self.audit.flicker
            before, after = _mean(c.flicker_before), _mean(c.flicker_after)
        table = _replace(table, "segment", pa.array(segments, pa.int32()))
        table = _replace(table, "audit", pa.array(audits, AUDIT))
        table = _replace(table, "flags", pa.array(flags, FLAGS))
        figures = {
            "segments": int(segments.max()) + 1 if n else 0,
            "flicker_before": before,
            "flicker_after": after,
            "flag_rates": {name: _rate([f.get(name) for f in flags]) for name in FLAG_NAMES},
        }
        return table, figures


def _thumb(data: bytes | None) -> np.ndarray:
    if not data:
        return np.zeros((1, 1, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _small_flow(data: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    if data is None:
        return None
    flow, valid = decode_flow_png(data)
    return ops.small_flow(np.nan_to_num(flow), valid, shape)


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), table.schema.field(name), values)


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _rate(values: list[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
