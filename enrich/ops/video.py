"""Decoding the sampled frames of one clip in bounded chunks: decord opens and indexes the file,
PyAV decodes the frames.

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


def read_chunks(path: str, indices: np.ndarray, timestamps: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
    """Decode the frames `indices` (sorted) of the file `path`, `chunk` frames at a time.

    The frames come from PyAV, in presentation order as decord counts them (and bit-identical to
    decord's RGB, which the tests check), decoded only as the caller asks for them: between chunks
    nothing runs. decord's reader decodes ahead in a thread while its caller waits, without bound
    (dmlc/decord#157, #208), and a caller held back by the pipeline's backpressure let one reader
    fill 18 GB with a 4K clip; here memory stays at a chunk and the decoder's few frames of state."""
    import av

    position, frame = -1, None
    with av.open(path) as container:
        decoded = container.decode(container.streams.video[0])
        for start in range(0, len(indices), chunk):
            picked = indices[start : start + chunk]
            frames = []
            try:
                for target in picked:
                    while position < target:
                        frame = next(decoded)
                        position += 1
                    frames.append(frame.to_ndarray(format="rgb24"))
            except (StopIteration, av.FFmpegError) as exc:
                reason = _reason(exc, "read")
                raise ClipError(f"{reason} (decoding failed after {start} sampled frames)") from None
            yield FrameChunk(picked, timestamps[picked], np.stack(frames))


def sampled(reader, fps: float | None, max_frames: int | None) -> tuple[VideoInfo, np.ndarray, np.ndarray]:
    """Stream info, the sampled indices and all frame timestamps."""
    try:
        info, timestamps = probe(reader)
    except Exception as exc:
        raise ClipError(_reason(exc, "read")) from None
    return info, sample_indices(timestamps, fps, max_frames), timestamps
