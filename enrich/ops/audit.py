"""Per-frame audit scores: where monocular depth cannot be trusted. Plain numpy/scipy on one frame.

Every score is computed at a fixed working size (the frame resized so its height is WORK_HEIGHT),
so thresholds mean the same at 360p and 4K. Luma is 0..255. Each function returns plain floats;
`enrich.stages.audit` turns them into flags with the thresholds of `AuditConfig` (README: Audits).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from enrich.manifest.kinds import kind_of

WORK_HEIGHT = 360
TEXTURE_BLOCK = 16  # px at the working size


def luma(frame: np.ndarray, height: int = WORK_HEIGHT) -> np.ndarray:
    """BT.601 luma of an RGB uint8 frame, resized to `height` rows, as float32 0..255."""
    img = Image.fromarray(frame).convert("L")
    if img.height != height:
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high on crisp edges, low when motion or focus blurs them."""
    return float(ndimage.laplace(gray).var())


def exposure(gray: np.ndarray, dark: float = 16.0, bright: float = 240.0) -> tuple[float, float, float]:
    """Mean luma and the fractions of pixels crushed to black (< dark) and blown out (> bright)."""
    return float(gray.mean()), float((gray < dark).mean()), float((gray > bright).mean())


def textureless_fraction(gray: np.ndarray, min_std: float = 3.0, block: int = TEXTURE_BLOCK) -> float:
    """Fraction of BLOCKxBLOCK tiles whose luma standard deviation is below `min_std`."""
    h, w = (gray.shape[0] // block) * block, (gray.shape[1] // block) * block
    if h == 0 or w == 0:
        return float(gray.std() < min_std)
    tiles = gray[:h, :w].reshape(h // block, block, w // block, block)
    return float((tiles.std(axis=(1, 3)) < min_std).mean())


def normalized_disparity(depth: np.ndarray, kind: str) -> np.ndarray:
    """Disparity-like map scaled to 0..1 between its 2nd and 98th percentiles (near = 1)."""
    d = kind_of(kind).to_disparity(depth)
    sample = d[::4, ::4]  # percentiles of a 1/16 sample: the same to well under 1%, 16x cheaper
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return np.zeros_like(d)
    lo, hi = np.percentile(finite, [2, 98])
    return np.clip((np.nan_to_num(d, nan=lo) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def near_fraction(
    depth: np.ndarray, kind: str, metric_near_m: float = 0.75, disparity01: np.ndarray | None = None
) -> float:
    """How much of the view is near field.

    Relative disparity (known only up to scale and shift): the fraction of pixels in the nearer half
    of the frame's disparity range (normalised disparity >= 0.5). A tilted floor scores about 0.5,
    a hand or an object filling the view much more. Metric depth: the fraction closer than
    `metric_near_m` metres.
    """
    if kind_of(kind).metric:
        d = np.asarray(depth, dtype=np.float32)
        return float(np.mean(np.isfinite(d) & (d < metric_near_m)))
    if disparity01 is None:
        disparity01 = normalized_disparity(depth, kind)
    return float((disparity01 >= 0.5).mean())


def largest_person_area(people: list[dict] | None, width: int, height: int) -> float | None:
    """The largest person box as a fraction of the frame (None: pose did not run)."""
    if people is None:
        return None
    areas = [p["bbox"][2] * p["bbox"][3] for p in people]
    return float(min(1.0, max(areas, default=0.0) / max(width * height, 1)))


def specular_fraction(frame: np.ndarray, height: int = WORK_HEIGHT) -> float:
    """Fraction of pixels in small bright, colourless highlights (V >= 0.9, S <= 0.25), the glints of
    glass, water and polished floors; large saturated areas (sky, a lamp filling the view) are not
    highlights and are left out: a pixel counts when under half of its 15x15 neighbourhood is bright.
    """
    img = Image.fromarray(frame)
    if img.height != height:
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.BILINEAR)
    hsv = np.asarray(img.convert("HSV"), dtype=np.float32) / 255.0
    bright = (hsv[..., 2] >= 0.9) & (hsv[..., 1] <= 0.25)
    small = ndimage.uniform_filter(bright.astype(np.float32), size=15) < 0.5
    return float((bright & small).mean())


def reflection_mismatch(gray: np.ndarray, disparity01: np.ndarray, edge: float = 24.0) -> float:
    """Fraction of strong image edges lying where the depth is flat.

    A mirror, a window or a wet floor shows the texture of what it reflects (image edges) while the
    model sees one smooth surface (no depth edge). Textured flat surfaces (posters, carpets) score
    too, which is why this alone never raises the flag. `edge`: gradient magnitude in luma units.
    """
    d = np.asarray(Image.fromarray(disparity01.astype(np.float32)).resize(gray.shape[::-1], Image.BILINEAR))
    g = np.hypot(ndimage.sobel(gray, axis=0), ndimage.sobel(gray, axis=1)) / 8.0
    dg = np.hypot(ndimage.sobel(d, axis=0), ndimage.sobel(d, axis=1)) / 8.0
    edges = g > edge
    if edges.sum() < 0.001 * edges.size:
        return 0.0
    flat_depth = ndimage.maximum_filter(dg, size=5) < 0.01  # < 1% of the depth range per pixel
    return float((edges & flat_depth).sum() / edges.sum())


def fb_inconsistent_fraction(forward: np.ndarray, backward: np.ndarray, step: int = 2) -> float:
    """Forward-backward check (Sundaram et al., 2010): a pixel p is inconsistent when
    |f(p) + b(p + f(p))|^2 > 0.01 (|f(p)|^2 + |b(p + f(p))|^2) + 0.5. Pixels whose flow leaves the frame
    are not counted. Returns the fraction of inconsistent pixels among those counted, checked on
    every `step`-th pixel in each direction (b is sampled at full resolution)."""
    h, w = forward.shape[:2]
    ys, xs = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
    forward = forward[::step, ::step]
    qx, qy = xs + forward[..., 0], ys + forward[..., 1]
    inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
    if not inside.any():
        return 0.0
    coords = np.stack([qy[inside], qx[inside]])
    bx = ndimage.map_coordinates(backward[..., 0], coords, order=1)
    by = ndimage.map_coordinates(backward[..., 1], coords, order=1)
    fx, fy = forward[..., 0][inside], forward[..., 1][inside]
    err = (fx + bx) ** 2 + (fy + by) ** 2
    bad = err > 0.01 * (fx**2 + fy**2 + bx**2 + by**2) + 0.5
    return float(bad.mean())
