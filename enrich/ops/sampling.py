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


def windows(
    timestamps: np.ndarray,
    sampled: np.ndarray,
    seconds: float,
    k: int,
    end_s: float,
    shots: np.ndarray | None = None,
) -> list[Window]:
    """The windows of `seconds` that hold a sampled frame, each with the frames nearest to k evenly
    spaced times within it (all of them when it has k or fewer). Windows run from the clip's first
    frame; with `shots` (the shot of each sampled frame, from 0), from each shot's first sampled
    frame instead, and a window never crosses into the next shot. The last window ends at `end_s`
    (the clip's duration, or the next shot's start) if that comes first."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if not len(sampled):
        return []
    shots = np.zeros(len(sampled), dtype=np.int64) if shots is None else np.asarray(shots)
    starts = np.flatnonzero(np.r_[True, shots[1:] != shots[:-1]])
    found = []
    for i, first in enumerate(starts):
        last = starts[i + 1] if i + 1 < len(starts) else len(sampled)
        t0 = timestamps[0] if first == 0 else timestamps[sampled[first]]
        until = end_s if last == len(sampled) else float(timestamps[sampled[last]])
        found += _windows_in(timestamps, sampled, first, last, t0, until, seconds, k)
    return found


def _windows_in(timestamps, sampled, first: int, last: int, t0: float, until: float, seconds: float, k: int):
    """The windows of the sampled rows first..last-1, gridded from t0 and ending by `until`."""
    ids = np.floor((timestamps[sampled[first:last]] - t0) / seconds + 1e-9).astype(np.int64)
    found = []
    for offset in np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]):
        row = first + int(offset)
        start = t0 + ids[offset] * seconds
        end = max(min(start + seconds, until), timestamps[sampled[row]] + 1e-6)
        inside = np.flatnonzero((timestamps >= start - 1e-9) & (timestamps < end))
        if len(inside) <= k:  # a window with k frames or fewer: all of them
            picked = inside
        else:
            targets = start + (np.arange(k) + 0.5) * (end - start) / k
            picked = np.unique(inside[np.abs(timestamps[inside][None, :] - targets[:, None]).argmin(axis=1)])
        found.append(Window(row, float(start), float(end), picked.astype(np.int64)))
    return found
