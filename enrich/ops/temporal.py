"""Temporal consistency of relative depth along a clip, and scene-cut detection. Plain numpy/scipy.

Relative disparity from a monocular model is right only up to a scale and a shift, and both drift
from frame to frame (flicker). Within each shot, frame t is mapped by s_t * d + b_t onto its aligned
predecessor: a symmetric line fit over reliable pixels (valid in both maps; with flow, frame t is
sampled where the flow carries each pixel of frame t-1), refitted without the 20% worst residuals.
`smooth` then runs a Gaussian filter (sigma in frames) over each aligned frame's median and spread
within the shot and rescales the frame to the filtered values. Everything works on small maps
(longest side SMALL_SIDE): the fit has two unknowns, and thousands of pixels pin them down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

SMALL_SIDE = 96
TRIM = 0.2  # fraction of worst residuals dropped before the refit
MIN_PIXELS = 32  # fewer reliable pixels than this: no fit, the previous transform is kept
HIST_BINS = 4  # per RGB channel, for cut detection next to flat frames


def small_shape(height: int, width: int, side: int = SMALL_SIDE) -> tuple[int, int]:
    """(rows, columns) of a map of that size once shrunk by `small_map`."""
    f = min(1.0, side / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def small_map(values: np.ndarray, side: int = SMALL_SIDE) -> np.ndarray:
    """A float map shrunk (box filter) so its longest side is <= side; NaN stays NaN, without
    bleeding into its valid neighbours."""
    v = np.asarray(values, dtype=np.float32)
    rows, cols = small_shape(*v.shape, side)
    size = (cols, rows)
    valid = np.isfinite(v)
    total = np.asarray(Image.fromarray(np.where(valid, v, 0).astype(np.float32)).resize(size, Image.BOX))
    weight = np.asarray(Image.fromarray(valid.astype(np.float32)).resize(size, Image.BOX))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0.5, total / weight, np.nan).astype(np.float32)


def small_flow(flow: np.ndarray, valid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A flow field (H, W, 2) shrunk to `shape`, vectors scaled to match; invalid vectors -> NaN."""
    h, w = flow.shape[:2]
    sy, sx = shape[0] / h, shape[1] / w
    u = small_map(np.where(valid, flow[..., 0], np.nan), max(shape))
    v = small_map(np.where(valid, flow[..., 1], np.nan), max(shape))
    u, v = u[: shape[0], : shape[1]], v[: shape[0], : shape[1]]
    return np.stack([u * sx, v * sy], axis=-1)


@dataclass(frozen=True)
class Signature:
    """What cut detection keeps of a frame: a tiny grey image, its contrast, its colour histogram."""

    grey: np.ndarray  # SIGNATURE_SIZE, zero mean, unit variance (zeros when flat)
    contrast: float  # luma standard deviation at that size
    histogram: np.ndarray  # normalised HIST_BINS^3 RGB histogram


SIGNATURE_SIZE = (32, 18)
FLAT = 2.0  # luma std below which a frame has no structure to compare (black, a blank card)


def signature(rgb: np.ndarray) -> Signature:
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    grey = np.asarray(img.convert("L").resize(SIGNATURE_SIZE, Image.BOX), dtype=np.float32)
    contrast = float(grey.std())
    norm = (grey - grey.mean()) / contrast if contrast >= FLAT else np.zeros_like(grey)
    q = (np.asarray(rgb, dtype=np.uint16) * HIST_BINS // 256).reshape(-1, 3)
    hist = np.bincount((q[:, 0] * HIST_BINS + q[:, 1]) * HIST_BINS + q[:, 2], minlength=HIST_BINS**3)
    return Signature(norm, contrast, hist / max(hist.sum(), 1))


def cut_distance(a: Signature, b: Signature) -> float:
    """0 (same shot) .. 1. Two frames with structure: (1 - r) / 2, r the correlation of their tiny
    contrast-normalised grey images, which sees a cut between two shots of the same palette (dark
    to dark) and ignores lighting changes. When either is flat (black, fading): the total-variation
    distance of their colour histograms, which sees black -> picture and not a slow fade."""
    if a.contrast >= FLAT and b.contrast >= FLAT:
        return float((1.0 - float((a.grey * b.grey).mean())) / 2.0)
    return float(0.5 * np.abs(a.histogram - b.histogram).sum())


CUT_WINDOW = 4  # neighbours on each side that set the local level of change
CUT_RATIO = 3.0  # a cut stands this far above that level


def segments_from_cuts(signatures: list[Signature], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Shot index of each frame, and each frame's cut distance to its predecessor (NaN for the
    first). A cut falls before frame t when its distance exceeds `threshold` and CUT_RATIO times
    the median distance of its CUT_WINDOW neighbours on each side: fast motion sampled sparsely
    changes every frame a lot, a cut changes one frame much more than its neighbours."""
    n = len(signatures)
    distance = np.full(n, np.nan)
    for t in range(1, n):
        distance[t] = cut_distance(signatures[t - 1], signatures[t])
    cuts = np.zeros(n, dtype=bool)
    for t in range(1, n):
        around = np.r_[distance[max(1, t - CUT_WINDOW) : t], distance[t + 1 : t + 1 + CUT_WINDOW]]
        level = float(np.median(around)) if around.size >= 2 else 0.0
        cuts[t] = distance[t] > threshold and distance[t] > CUT_RATIO * level
    return np.cumsum(cuts).astype(np.int32), distance


def paired_samples(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Values of frame t-1 and of frame t at corresponding pixels, where both are valid.

    With flow (t-1 -> t, at the small maps' size), frame t is sampled bilinearly at p + f(p).
    Without, both are compared in place after a small blur, which tolerates small motion."""
    if flow is None:
        a = _blur(prev)
        b = _blur(cur)
    else:
        h, w = prev.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        qx, qy = xs + flow[..., 0], ys + flow[..., 1]
        inside = np.isfinite(qx) & np.isfinite(qy) & (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        b = np.full_like(prev, np.nan)
        coords = np.stack([qy[inside], qx[inside]])
        b[inside] = ndimage.map_coordinates(cur, coords, order=1, cval=np.nan)
        a = prev
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def _blur(m: np.ndarray) -> np.ndarray:
    valid = np.isfinite(m)
    num = ndimage.gaussian_filter(np.where(valid, m, 0).astype(np.float32), 1.5)
    den = ndimage.gaussian_filter(valid.astype(np.float32), 1.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (den > 0.5), num / den, np.nan)


def fit_affine(src: np.ndarray, dst: np.ndarray, trim: float = TRIM) -> tuple[float, float] | None:
    """(s, b) with s * src + b ~ dst (a symmetric line fit, see `_lstsq`), refitted without the `trim`
    worst residuals.
    None when there are too few pixels, src is constant, or s comes out <= 0 (order would flip)."""
    if src.size < MIN_PIXELS:
        return None
    s, b = _robust_line(src, dst)
    if s is None:
        return None
    if trim > 0:
        resid = np.abs(s * src + b - dst)
        keep = resid <= np.quantile(resid, 1 - trim)
        if keep.sum() >= MIN_PIXELS:
            s2, b2 = _lstsq(src[keep], dst[keep])
            if s2 is not None:
                s, b = s2, b2
    return (s, b) if s > 0 else None


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float]:
    """A first line that outliers barely move: the ratio of interquartile ranges through the medians."""
    qx, qy = np.percentile(x, [25, 50, 75]), np.percentile(y, [25, 50, 75])
    spread = qx[2] - qx[0]
    if not np.isfinite(spread) or spread <= 1e-12 * max(1.0, float(np.abs(qx).max())):
        return None, 0.0
    sign = np.sign(((x - x.mean()) * (y - y.mean())).mean())
    s = float(sign * (qy[2] - qy[0]) / spread)
    return s, float(qy[1] - s * qx[1])


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float]:
    """Symmetric (reduced major axis) line fit: s = sign(cov) * std(y) / std(x), the geometric mean
    of regressing y on x and x on y. Ordinary least squares would shrink s towards 0 whenever x is
    noisy, and chaining frame after frame would compound that into a slow flattening of the depth."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    vx, vy = x.var(), y.var()
    if not np.isfinite(vx) or vx <= 1e-12 * max(1.0, np.abs(x).max() ** 2) or vy <= 0:
        return None, 0.0
    cov = ((x - x.mean()) * (y - y.mean())).mean()
    s = float(np.sign(cov) * np.sqrt(vy / vx))
    return s, float(y.mean() - s * x.mean())


def flicker(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray | None) -> float | None:
    """Median |d_t - d_{t-1}| over corresponding pixels, as a fraction of frame t-1's spread
    (its 95th minus 5th percentile): 0.05 means the frames disagree by 5% of the depth range."""
    a, b = paired_samples(prev, cur, flow)
    if a.size < MIN_PIXELS:
        return None
    lo, hi = np.percentile(a, [5, 95])
    return float(np.median(np.abs(b - a)) / max(hi - lo, 1e-12))


@dataclass(frozen=True)
class Consistency:
    scale: np.ndarray  # per frame: aligned = scale * raw + shift
    shift: np.ndarray
    flicker_before: np.ndarray  # per frame (NaN for the first of a shot): flicker against t-1, raw
    flicker_after: np.ndarray  # the same after alignment


def make_consistent(
    maps: list[np.ndarray],
    flows: list[np.ndarray | None],
    segments: np.ndarray,
    mode: str,
    sigma: float = 2.0,
) -> Consistency:
    """Per-frame (scale, shift) for a clip's small disparity maps, in frame order.

    maps[t]: frame t's disparity (NaN = no value); flows[t]: flow from frame t to t+1 at the same
    small size (None without flow); segments[t]: shot index. mode: off | align | smooth."""
    n = len(maps)
    scale, shift = np.ones(n), np.zeros(n)
    if mode in ("align", "smooth"):
        for t in range(1, n):
            if segments[t] != segments[t - 1]:
                continue  # a new shot starts from its own raw values
            target = scale[t - 1] * maps[t - 1] + shift[t - 1]
            prev_values, cur_values = paired_samples(target, maps[t], flows[t - 1])
            fit = fit_affine(cur_values, prev_values)
            scale[t], shift[t] = fit if fit else (scale[t - 1], shift[t - 1])
    if mode == "smooth":
        scale, shift = _smooth(maps, segments, scale, shift, sigma)
    before, after = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(1, n):
        if segments[t] != segments[t - 1]:
            continue
        f = flows[t - 1]
        raw = flicker(maps[t - 1], maps[t], f)
        aligned = flicker(scale[t - 1] * maps[t - 1] + shift[t - 1], scale[t] * maps[t] + shift[t], f)
        before[t] = np.nan if raw is None else raw
        after[t] = np.nan if aligned is None else aligned
    return Consistency(scale, shift, before, after)


def _smooth(maps, segments, scale, shift, sigma):
    """Gaussian filter over each aligned frame's median and spread (p90 - p10), per shot."""
    n = len(maps)
    med, spread = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(n):
        v = (scale[t] * maps[t] + shift[t])[np.isfinite(maps[t])]
        if v.size:
            med[t] = np.median(v)
            p10, p90 = np.percentile(v, [10, 90])
            spread[t] = p90 - p10
    scale, shift = scale.copy(), shift.copy()
    for seg in np.unique(segments):
        idx = np.flatnonzero((segments == seg) & np.isfinite(med) & (spread > 0))
        if idx.size < 2:
            continue
        m = ndimage.gaussian_filter1d(med[idx], sigma, mode="nearest")
        r = np.exp(ndimage.gaussian_filter1d(np.log(spread[idx]), sigma, mode="nearest"))
        k = r / spread[idx]
        scale[idx], shift[idx] = scale[idx] * k, (shift[idx] - med[idx]) * k + m
    return scale, shift
