"""Which frames of a clip are sampled.

Sampling follows the frames' own timestamps rather than an average frame rate, so variable-rate
footage is sampled evenly in time: with `fps=2`, the first frame of every half-second bin is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sample_indices(timestamps: np.ndarray, fps: float | None, max_frames: int | None) -> np.ndarray:
    """Indices of the sampled frames, in stream order.

    `timestamps` are the frames' presentation times in seconds. `fps=None` keeps every frame.
    `max_frames` keeps the first N sampled frames.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.size == 0:
        return np.zeros(0, dtype=np.int64)
    if fps is None:
        indices = np.arange(timestamps.size, dtype=np.int64)
    else:
        # Bin of each frame. The margin keeps a frame on a bin's edge (k/fps exactly) in its own bin,
        # also when its time came as float32 (decord's), which can be half an ulp early: 0.6 us at 16 s.
        margin = 1e-6 + 0.5 * fps * np.spacing(np.abs(timestamps).astype(np.float32)).astype(np.float64)
        bins = np.floor((timestamps - timestamps[0]) * fps + margin).astype(np.int64)
        first_in_bin = np.ones(bins.size, dtype=bool)
        first_in_bin[1:] = bins[1:] > np.maximum.accumulate(bins)[:-1]
        indices = np.flatnonzero(first_in_bin).astype(np.int64)
    if max_frames is not None:
        indices = indices[:max_frames]
    return indices


@dataclass(frozen=True)
class Window:
    """A caption window: the sampled frame it is stored on, its span, and the frames that show it."""

    row: int  # position among the sampled frames: the window's first sampled frame carries it
    start_s: float
    end_s: float
    frames: np.ndarray  # int64 [k], indices in the stream, sorted


def windows(timestamps: np.ndarray, sampled: np.ndarray, seconds: float, k: int, end_s: float) -> list[Window]:
    """The windows of `seconds` (from the clip's first frame) that hold a sampled frame, each with
    the frames nearest to k evenly spaced times within it (all of them when it has k or fewer).
    The last window ends at `end_s` (the clip's duration) if that comes first."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if not len(sampled):
        return []
    t0 = timestamps[0]
    ids = np.floor((timestamps[sampled] - t0) / seconds + 1e-9).astype(np.int64)
    found = []
    for row in np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]):
        start = t0 + ids[row] * seconds
        end = max(min(start + seconds, end_s), timestamps[sampled[row]] + 1e-6)
        inside = np.flatnonzero((timestamps >= start - 1e-9) & (timestamps < end))
        if len(inside) <= k:  # a window with k frames or fewer: all of them
            picked = inside
        else:
            targets = start + (np.arange(k) + 0.5) * (end - start) / k
            picked = np.unique(inside[np.abs(timestamps[inside][None, :] - targets[:, None]).argmin(axis=1)])
        found.append(Window(int(row), float(start), float(end), picked.astype(np.int64)))
    return found
