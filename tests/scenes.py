"""Depth and flow that look like a real egocentric frame's, for codec tests and benchmarks.

A random model's depth is noise and compresses like noise, which says nothing about the files a
real model writes. Real maps are piecewise smooth: a ground plane, walls and objects at their own
depths, sharp edges between them, a little model noise. This builds such a scene by ray casting
with a pinhole camera, and its optical flow for a camera that walks forward and turns a little
while one object (a person, say) moves on its own.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

CAMERA_HEIGHT_M = 1.5
SKY_M = 80.0


def scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(depth in metres float32 [H, W], flow in px float32 [H, W, 2])."""
    rng = np.random.default_rng(seed)
    f = 0.8 * width
    cx, cy = width / 2, height * 0.45
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    below = np.maximum(y - cy, 1e-3)
    depth = np.where(y > cy + 1, np.minimum(f * CAMERA_HEIGHT_M / below, SKY_M), SKY_M)
    mover = np.zeros((height, width), bool)
    for index in range(7):  # boxes and walls: planes at their own depth, nearest drawn last
        w, h = rng.uniform(0.08, 0.35) * width, rng.uniform(0.15, 0.6) * height
        left, top = rng.uniform(-0.1, 0.9) * width, cy - h * rng.uniform(0.3, 0.9)
        inside = (x >= left) & (x < left + w) & (y >= top) & (y < top + h)
        plane = rng.uniform(2, 25) + rng.normal(0, 0.004) * (x - left) + rng.normal(0, 0.002) * (y - top)
        nearer = inside & (plane < depth)
        depth = np.where(nearer, plane, depth)
        if index == 6:
            mover = nearer
    # A model predicts at about 518 px and is upsampled: soft edges, and noise that is not per pixel.
    noise = ndimage.zoom(rng.normal(0, 0.003, (height // 4 + 1, width // 4 + 1)), 4, order=1)
    depth = ndimage.gaussian_filter(depth * (1 + noise[:height, :width]), 1.0)
    forward, yaw = 0.25, np.radians(0.6)  # metres and radians per frame
    u = (x - cx) * forward / depth + f * np.tan(yaw) + (x - cx) ** 2 / f * yaw
    v = (y - cy) * forward / depth + (x - cx) * (y - cy) / f * yaw
    u = np.where(mover, u + 9.0, u)
    v = np.where(mover, v - 1.5, v)
    flow = np.stack([ndimage.gaussian_filter(c, 1.0) for c in (u, v)], axis=-1)
    flow += ndimage.zoom(rng.normal(0, 0.05, (height // 4 + 1, width // 4 + 1, 2)), (4, 4, 1), order=1)[:height, :width]
    return depth.astype(np.float32), flow.astype(np.float32)


def disparity(depth: np.ndarray) -> np.ndarray:
    """What a relative depth model (Depth Anything) predicts: inverse depth, up to scale."""
    return (1.0 / depth).astype(np.float32)
