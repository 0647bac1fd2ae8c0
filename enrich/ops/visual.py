"""Pictures of what the manifest holds: colourised depth and flow, pose drawn on a frame."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from enrich.manifest.kinds import kind_of
from enrich.ops.quantize import decode_png16, dequantize

# Depth ramp (near = bright): anchors from black through purple, red and orange to pale yellow.
RAMP = np.array([[0, 0, 4], [60, 15, 110], [150, 40, 110], [230, 80, 50], [250, 170, 30], [252, 250, 190]], float)
# COCO keypoint pairs drawn as limbs.
SKELETON = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14),
            (14, 16), (0, 1), (0, 2), (1, 3), (2, 4)]  # fmt: skip


def depth_rgb(row: dict) -> np.ndarray | None:
    """A frame row's depth as RGB, near = bright, stretched between its 2nd and 98th percentiles."""
    if row.get("depth_png") is None:
        return None
    values = dequantize(decode_png16(row["depth_png"]), row["depth_scale"], row["depth_offset"])
    values = kind_of(row.get("depth_kind")).to_disparity(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros((*values.shape, 3), np.uint8)
    lo, hi = np.percentile(finite, [2, 98])
    t = np.clip((np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-9), 0, 1)
    pos = t * (len(RAMP) - 1)
    i = np.minimum(pos.astype(int), len(RAMP) - 2)
    frac = (pos - i)[..., None]
    return (RAMP[i] * (1 - frac) + RAMP[i + 1] * frac).astype(np.uint8)


def flow_rgb(flow: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The usual flow picture: hue = direction, brightness = speed (up to the 99th percentile)."""
    u, v = np.nan_to_num(flow[..., 0]), np.nan_to_num(flow[..., 1])
    speed = np.hypot(u, v)
    top = max(float(np.percentile(speed[valid], 99)) if valid.any() else 1.0, 1e-6)
    hsv = np.stack(
        [
            ((np.arctan2(v, u) + np.pi) / (2 * np.pi) * 255).astype(np.uint8),
            np.full(u.shape, 255, np.uint8),
            (np.clip(speed / top, 0, 1) * 255 * valid).astype(np.uint8),
        ],
        axis=-1,
    )
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def draw_pose(frame: np.ndarray, people: list[dict], min_score: float = 0.3) -> np.ndarray:
    img = Image.fromarray(frame).convert("RGB")
    draw = ImageDraw.Draw(img)
    width = max(2, img.width // 300)
    for person in people:
        x, y, w, h = person["bbox"]
        draw.rectangle([x, y, x + w, y + h], outline=(0, 255, 0), width=width)
        points = person["keypoints"]
        for a, b in SKELETON:
            if points[a]["score"] >= min_score and points[b]["score"] >= min_score:
                draw.line(
                    [(points[a]["x"], points[a]["y"]), (points[b]["x"], points[b]["y"])],
                    fill=(255, 64, 64),
                    width=width,
                )
        for p in points:
            if p["score"] >= min_score:
                r = width * 1.5
                draw.ellipse([p["x"] - r, p["y"] - r, p["x"] + r, p["y"] + r], fill=(255, 255, 0))
    return np.asarray(img)


def side_by_side(panels: list[np.ndarray], height: int = 360) -> Image.Image:
    """Panels scaled to one height, left to right."""
    scaled = []
    for p in panels:
        img = Image.fromarray(p)
        scaled.append(img.resize((max(1, round(img.width * height / img.height)), height), Image.BILINEAR))
    canvas = Image.new("RGB", (sum(i.width for i in scaled) + 4 * (len(scaled) - 1), height), (255, 255, 255))
    x = 0
    for img in scaled:
        canvas.paste(img, (x, 0))
        x += img.width + 4
    return canvas
