"""Audit: per-frame scores of where depth cannot be trusted, their flags, and a small thumbnail.

Ray tasks on CPUs after the model stages, so they never hold up a GPU. Reads each frame and, when
their stages ran, its raw depth, forward and backward flow and people. Scores and flags travel as
JSON (like pose) and the writer types them as the `audit` and `flags` structs. `depth_flicker` and
the shot boundaries need the whole clip in order: `enrich.stages.temporal` adds them at commit.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from enrich.config import AuditConfig
from enrich.ops import audit as ops
from enrich.stages.base import ERROR, Stage, ok_rows
from enrich.stages.depth import DEPTH_COLUMNS, depth_map

THUMB_SIDE = 256  # longest side of the stored JPEG thumbnail


class Audit(Stage):
    name = "audit"
    inputs = ("frame", *DEPTH_COLUMNS, "depth_kind", "flow", "flow_back", "pose", "width", "height", ERROR)
    outputs = ("audit", "flags", "thumb_jpeg")  # null for a frame the audit cannot read

    def __init__(self, cfg: AuditConfig | None = None, drop=()):
        super().__init__(drop)
        self.cfg = cfg or AuditConfig()

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[ERROR])
        audits = np.array([None] * n, dtype=object)
        flags = np.array([None] * n, dtype=object)
        thumbs = np.array([None] * n, dtype=object)
        for i in ok_rows(batch):
            try:
                row = {k: batch[k][i] for k in self.inputs if k in batch}
                scores = self.scores({**row, "depth": depth_map(batch, i)})
                audits[i], flags[i] = json.dumps(scores), json.dumps(self.flags(scores))
                thumbs[i] = thumbnail(batch["frame"][i])
            except Exception:  # a diagnostic must not cost the frame its depth: null audit = not computed
                audits[i] = flags[i] = thumbs[i] = None
        return {**batch, "audit": audits, "flags": flags, "thumb_jpeg": thumbs}

    def scores(self, row: dict) -> dict[str, float | None]:
        frame = row["frame"]
        gray = ops.luma(frame)
        mean, dark, bright = ops.exposure(gray)
        out: dict[str, float | None] = {
            "sharpness": ops.sharpness(gray),
            "luma_mean": mean,
            "dark_fraction": dark,
            "bright_fraction": bright,
            "textureless_fraction": ops.textureless_fraction(gray, self.cfg.texture_std),
            "specular_fraction": ops.specular_fraction(frame),
            "near_fraction": None,
            "reflection_mismatch": None,
            "person_area": None,
            "fb_inconsistent_fraction": None,
        }
        depth = row.get("depth")
        if depth is not None and np.size(depth):
            kind = str(row["depth_kind"])
            disparity01 = ops.normalized_disparity(depth, kind)
            out["near_fraction"] = ops.near_fraction(depth, kind, self.cfg.near_metric_m, disparity01)
            out["reflection_mismatch"] = ops.reflection_mismatch(gray, disparity01)
        if isinstance(row.get("pose"), str) and row["pose"]:  # "" (or NaN, from Ray): pose gave none
            people = json.loads(row["pose"])
            out["person_area"] = ops.largest_person_area(people, int(row["width"]), int(row["height"]))
        forward, backward = row.get("flow"), row.get("flow_back")
        if forward is not None and backward is not None and np.size(forward) and np.size(backward):
            out["fb_inconsistent_fraction"] = ops.fb_inconsistent_fraction(forward, backward)
        return out

    def flags(self, s: dict[str, float | None]) -> dict[str, bool | None]:
        """Each flag from its scores (README: Audits). None: its inputs were not computed."""
        c = self.cfg
        low_texture = s["textureless_fraction"] > c.low_texture_fraction
        near = None if s["near_fraction"] is None else s["near_fraction"] > c.near_fraction
        person = None if s["person_area"] is None else s["person_area"] > c.person_area
        close = None if near is None and person is None else bool(near or person)
        mismatch = s["reflection_mismatch"]
        return {
            "transparent_reflective": None
            if mismatch is None
            else s["specular_fraction"] > c.specular_fraction and mismatch > c.reflection_mismatch,
            "close_range": close,
            "low_texture": low_texture,
            # Blur is judged only where there is texture to blur: a black or blank frame is not blurred.
            "motion_blur": s["sharpness"] < c.blur_sharpness and not low_texture,
            "exposure": s["dark_fraction"] > c.dark_fraction or s["bright_fraction"] > c.bright_fraction,
            "depth_flicker": None,  # set at commit, when the clip's frames are all in
            "flow_inconsistent": None
            if s["fb_inconsistent_fraction"] is None
            else s["fb_inconsistent_fraction"] > c.flow_inconsistent_fraction,
        }


def thumbnail(frame: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    img = Image.fromarray(frame)
    img.thumbnail((side, side), Image.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
