"""Which frames of a clip are sampled.

Sampling follows the frames' own timestamps rather than an average frame rate, so variable-rate
footage is sampled evenly in time: with `fps=2`, the first frame of every half-second bin is kept.
"""

from __future__ import annotations

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
