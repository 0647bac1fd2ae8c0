"""Decoding the sampled frames of one clip in bounded chunks, with one of two decoders:

- `decord` (the default): decord opens and indexes the file, PyAV decodes the frames. Both wheels
  carry their own FFmpeg.
- `torchcodec`: torchcodec indexes (an exact scan of the packets) and decodes, seeking to the
  keyframe before each sampled frame when that skips work. It needs FFmpeg's shared libraries on
  the machine, and imports torch.

Both give the same frames, bit for bit, and the same timestamps (tests/stages/test_decode.py).
Decoder failures are translated into reasons a person can act on; the caller records them on the
clip and moves on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from enrich.errors import ClipError, UsageError


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


DECODERS = ("decord", "torchcodec")


def _reason(exc: Exception, stage: str) -> str:
    text = str(exc)
    if "cannot find video stream" in text or "No valid video stream" in text:
        return "no video stream in file (audio-only or not a video)"
    if stage == "open":
        return "cannot open as a video: corrupt, truncated or not a video file"
    return "corrupt or truncated video stream"


class Clip(Protocol):
    """An opened clip: its stream properties, every frame's start time, and its frames on demand."""

    info: VideoInfo
    timestamps: np.ndarray  # float64 [source_frames], seconds, in presentation order

    def chunks(self, indices: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
        """The frames `indices` (sorted), `chunk` at a time, decoded only as they are asked for."""
        ...


def open_clip(path: str, decoder: str = "decord") -> Clip:
    """The clip at the local path `path`, indexed; ClipError with a readable reason if it can't be."""
    if os.path.getsize(path) == 0:
        raise ClipError("empty file (0 bytes)")
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r} (known: {', '.join(DECODERS)})")
    return TorchcodecClip(path) if decoder == "torchcodec" else DecordClip(path)


class DecordClip:
    """decord indexes the file (and is then let go); PyAV decodes the frames (`read_chunks`)."""

    def __init__(self, path: str):
        self.path = path
        reader = open_video(path)
        try:
            self.info, self.timestamps = probe(reader)
        except Exception as exc:
            raise ClipError(_reason(exc, "read")) from None

    def chunks(self, indices: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
        return read_chunks(self.path, indices, self.timestamps, chunk)


class TorchcodecClip:
    """torchcodec's exact scan indexes the file; its decoder seeks and decodes the frames."""

    def __init__(self, path: str):
        from torchcodec.decoders import Demuxer, VideoDecoder

        try:
            index = Demuxer(path).streams[0].scan()
            self._decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1)
        except (RuntimeError, ValueError) as exc:  # torchcodec's C++ errors, with FFmpeg's text
            raise ClipError(_reason(exc, "open")) from None
        self.timestamps = index.pts_seconds.numpy().astype(np.float64)
        meta = self._decoder.metadata
        if len(self.timestamps) == 0:
            raise ClipError("video stream has no frames")
        duration = float(index.end_stream_seconds_from_content)
        self.info = VideoInfo(len(self.timestamps), float(meta.average_fps or 0.0), duration, meta.width, meta.height)

    def chunks(self, indices: np.ndarray, chunk: int) -> Iterator[FrameChunk]:
        for start in range(0, len(indices), chunk):
            picked = indices[start : start + chunk]
            try:
                frames = self._decoder.get_frames_at(picked.tolist()).data.numpy()
            except (RuntimeError, IndexError) as exc:
                reason = _reason(exc, "read")
                raise ClipError(f"{reason} (decoding failed after {start} sampled frames)") from None
            yield FrameChunk(picked, self.timestamps[picked], frames)


def check_decoder(decoder: str) -> None:
    """UsageError, in one line, if `decoder` cannot run here (torchcodec without FFmpeg's libraries).

    Checked in a fresh interpreter: torchcodec imports torch, which the driver never does. This is
    the driver's machine; on a cluster every node needs the libraries (README: Decoders)."""
    if decoder != "torchcodec":
        return
    code = "from torchcodec.decoders import VideoDecoder"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise UsageError("--decoder torchcodec: importing torchcodec took over 300 s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.strip().splitlines() if line.strip()]
        cause = lines[-1] if lines else f"exit code {done.returncode}"
        raise UsageError(
            f"--decoder torchcodec cannot load ({cause[:200]}): it needs `pip install torchcodec` and FFmpeg's "
            "shared libraries (Debian/Ubuntu: apt-get install ffmpeg; conda: conda install ffmpeg)"
        )


def open_video(path: str):
    """A decord VideoReader, or ClipError with a readable reason."""
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
