"""Decoding the sampled frames of one clip with decord, in bounded chunks.

Decoder failures are translated into reasons a person can act on; the caller records them on the
clip and moves on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from enrich.errors import ClipError
from enrich.ops.sampling import sample_indices


@dataclass(frozen=True)
class VideoInfo:
    source_frames: int  # frames in the video stream
    fps: float  # the stream's average frame rate
    duration_s: float
    width: int
    height: int


@dataclass(frozen=True)
class FrameChunk:
    indices: np.ndarray  # int64 [n], indices in the decoded stream
    timestamps: np.ndarray  # float64 [n], seconds
    frames: np.ndarray  # uint8 [n, H, W, 3], RGB


def _reason(exc: Exception, stage: str) -> str:
    text = str(exc)
    if "cannot find video stream" in text:
        return "no video stream in file (audio-only or not a video)"
    if stage == "open":
        return "cannot open as a video: corrupt, truncated or not a video file"
    return "corrupt or truncated video stream"


def open_video(path: str):
    """A decord VideoReader, or ClipError with a readable reason."""
    if os.path.getsize(path) == 0:
        raise ClipError("empty file (0 bytes)")
    import decord

    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        if len(reader) == 0:
            raise ClipError("video stream has no frames")
    except ClipError:
        raise
    except Exception as exc:  # decord raises DECORDError or RuntimeError with C++ log text
        raise ClipError(_reason(exc, "open")) from None
    return reader


def probe(reader) -> tuple[VideoInfo, np.ndarray]:
    """Stream properties and every frame's start time."""
    n = len(reader)
    timestamps = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64)[:, 0]
    height, width = reader[0].shape[:2]
    fps = float(reader.get_avg_fps() or 0.0)
    duration = float(reader.get_frame_timestamp(n - 1)[1]) if n else 0.0
    return VideoInfo(n, fps, duration, int(width), int(height)), timestamps


def read_chunks(reader, indices: np.ndarray, timestamps: np.ndarray, chunk: int, reopen=None) -> Iterator[FrameChunk]:
    """Decode `indices` `chunk` frames at a time, so memory stays bounded for long clips.

    A decord reader keeps what it decoded since it was opened (dmlc/decord#197, #208: a 4K clip
    read through one reader held 4 GiB after 150 frames), and only a new reader lets go of it. So
    with `reopen` (a function returning a new reader), a chunk that starts past a keyframe the
    current reader has decoded beyond gets a new reader, which decodes from that keyframe (again,
    at most a chunk's frames that the old one had decoded): memory stays within the frames of one
    keyframe interval and a chunk."""
    keys = np.asarray(_key_indices(reader) if reopen else [], dtype=np.int64)
    opened_at = 0  # the keyframe the current reader decodes from
    for start in range(0, len(indices), chunk):
        picked = indices[start : start + chunk]
        key = int(keys[keys <= picked[0]].max(initial=0)) if keys.size else 0
        if key > opened_at:  # a keyframe passed: a new reader decodes from it, the old one's frames go
            reader, opened_at = reopen(), key
        try:
            frames = reader.get_batch(picked.tolist()).asnumpy()
        except Exception as exc:
            raise ClipError(f"{_reason(exc, 'read')} (decoding failed after {start} sampled frames)") from None
        yield FrameChunk(picked, timestamps[picked], frames)


def _key_indices(reader) -> list[int]:
    try:
        return list(reader.get_key_indices())
    except Exception:  # no index: one reader for the whole clip, as before
        return []


def sampled(reader, fps: float | None, max_frames: int | None) -> tuple[VideoInfo, np.ndarray, np.ndarray]:
    """Stream info, the sampled indices and all frame timestamps."""
    try:
        info, timestamps = probe(reader)
    except Exception as exc:
        raise ClipError(_reason(exc, "read")) from None
    return info, sample_indices(timestamps, fps, max_frames), timestamps
