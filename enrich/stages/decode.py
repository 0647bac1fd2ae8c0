"""Decode: one clip row in, its sampled frames out, in chunks of a few frames.

Runs as Ray tasks on CPUs. A clip that cannot be read becomes a single row with an `error`; every
row of a clip carries `expected`, the number of rows the clip will produce in total, so the driver
knows when all of a clip's rows have been written (see `enrich.pipeline`).

With `pairs`, every row also carries `next_frame`, the clip's next sampled frame (empty for the last
one). Pairs are formed here, where the clip is whole, so they never cross clips however the rows
are later split into blocks, batches or actors.

With `windows=(seconds, k)`, the first sampled frame of every window of `seconds` also carries
`window_frames`, k frames spread over the window (shrunk to `WINDOW_SIDE`), and the window's span
(`window_start_s`, `window_end_s`; NaN on the other rows): what a captioning stage looks at.
With `shots` (a cut threshold), windows follow the clip's shots: decode first reads the sampled
frames once to find the cuts, exactly as the commit finds each frame's `segment` (the same
thumbnails and `enrich.ops.temporal.segments_from_cuts`), and no window crosses one.
With `frames=False` as well, only the windows' rows are emitted, without their frames: what a run
that redoes captions alone needs (`enrich.plan`), at the cost of decoding the windows' frames only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from enrich import storage
from enrich.errors import ClipError
from enrich.ops import video
from enrich.ops.sampling import sample_indices, windows
from enrich.runtime import yield_to_models
from enrich.stages.base import ERROR, Stage, column

CLIP_COLUMNS = ("clip_id", "clip_uri")
FRAME_COLUMNS = ("frame_index", "timestamp_s", "width", "height", "frame", "expected")
VIDEO_COLUMNS = ("source_frames", "fps", "duration_s")
CHUNK_BYTES = 64 * 2**20
WINDOW_SIDE = 640  # longest side of a window's frames (a VLM's processor shrinks them further)
WINDOW_COLUMNS = ("window_frames", "window_start_s", "window_end_s")


class Decode(Stage):
    name = "decode"
    inputs = CLIP_COLUMNS
    outputs = (*FRAME_COLUMNS, "next_frame", *WINDOW_COLUMNS, *VIDEO_COLUMNS, ERROR)

    def __init__(
        self,
        fps: float | None,
        max_frames: int | None,
        chunk: int = 8,
        pairs: bool = False,
        decoder: str = "decord",
        windows: tuple[float, int] | None = None,
        shots: float | None = None,
        frames: bool = True,
        drop=(),
    ):
        super().__init__(drop)
        if not frames and (pairs or not windows):
            raise ValueError("decode without frames emits windows only: it needs windows, and no pairs")
        self.fps, self.max_frames, self.chunk, self.pairs, self.decoder = fps, max_frames, chunk, pairs, decoder
        self.windows, self.shots, self.frames = windows, shots, frames

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        yield_to_models(self.nice)
        for clip_id, uri in zip(batch["clip_id"], batch["clip_uri"], strict=True):
            yield from self.decode_clip(str(clip_id), str(uri))

    def decode_clip(self, clip_id: str, uri: str) -> Iterator[dict[str, np.ndarray]]:
        emitted = 0
        try:
            with storage.local_copy(uri) as path:
                clip = video.open_clip(path, self.decoder)
                info = clip.info
                indices = sample_indices(clip.timestamps, self.fps, self.max_frames)
                # At most CHUNK_BYTES of frames at once: 8 frames up to 1080p, 2 at 4K.
                size = max(1, min(self.chunk, CHUNK_BYTES // (info.width * info.height * 3)))
                chunks = clip.chunks(indices, size)
                spans, window_frames = {}, None
                if self.windows:
                    seconds, k = self.windows
                    end = _covered(clip.timestamps, self.fps, indices, info.duration_s)
                    shots = _shots(clip, indices, self.shots, size) if self.shots else None
                    spans = {w.row: w for w in windows(clip.timestamps, indices, seconds, k, end, shots)}
                    window_frames = _frames_in_order(clip, [w.frames for w in spans.values()])
                if not self.frames:
                    for rows in _window_only_rows(clip_id, uri, clip, indices, list(spans.values()), window_frames):
                        yield rows
                        emitted += len(rows[ERROR])
                    return
                for chunk, following in _with_next(chunks) if self.pairs else ((c, None) for c in chunks):
                    rows = _frame_rows(clip_id, uri, chunk, info, expected=len(indices))
                    if self.pairs:
                        rows["next_frame"] = _next_frames(chunk, following)
                    if self.windows:
                        spans_here = [spans.get(emitted + i) for i in range(len(chunk.indices))]
                        rows.update(_window_rows(window_frames, spans_here))
                    yield rows
                    emitted += len(chunk.indices)
        except ClipError as exc:
            yield self._error_row(clip_id, uri, f"decode: {exc}", expected=emitted + 1)
        except Exception as exc:  # an unreadable object: the clip fails, the run goes on
            if storage.unreachable(exc):  # ... but storage that is gone is an outage: the driver stops the run
                reason = storage.UNREACHABLE + storage.describe_s3_error(exc, uri)
            elif storage.is_s3(uri):
                reason = f"read: {storage.describe_s3_error(exc, uri)}"
            else:
                reason = f"read: {type(exc).__name__}: {exc}"
            yield self._error_row(clip_id, uri, reason, expected=emitted + 1)

    def _error_row(self, clip_id: str, uri: str, reason: str, expected: int) -> dict:
        row = _error_row(clip_id, uri, reason, expected)
        if self.pairs:
            row["next_frame"] = row["frame"]
        if self.windows:
            row.update(_window_rows(None, [None]))
        return row


def _covered(timestamps: np.ndarray, fps: float | None, indices: np.ndarray, duration_s: float) -> float:
    """Where the sampled frames end: the clip's end, or, when `--max-frames-per-clip` cut the
    sampling short, where the first sampled frame it dropped starts (windows stop there)."""
    every = sample_indices(timestamps, fps, None)
    return duration_s if len(indices) >= len(every) else float(timestamps[every[len(indices)]])


def _shots(clip, indices: np.ndarray, threshold: float, size: int) -> np.ndarray:
    """The shot of each sampled frame, found as the commit finds `segment`: from the stored
    thumbnails' signatures (one pass over the sampled frames, `size` frames at a time)."""
    from enrich.ops.temporal import segments_from_cuts, signature
    from enrich.stages.audit import thumbnail
    from enrich.stages.temporal import thumb_rgb

    signatures = [signature(thumb_rgb(thumbnail(frame))) for c in clip.chunks(indices, size) for frame in c.frames]
    return segments_from_cuts(signatures, threshold)[0]


def _frames_in_order(clip, windows: list[np.ndarray]):
    """One forward pass over every window's frames (windows are disjoint and in order): a
    generator of each window's frames [k, H, W, 3], shrunk, pulled as the rows that carry them are
    emitted. (A reader per window would decode from the clip's start each time with PyAV.)"""
    if not windows:
        return iter(())
    frames = (f for chunk in clip.chunks(np.concatenate(windows), 1) for f in chunk.frames)
    return (_shrink(np.stack([next(frames) for _ in range(len(w))])) for w in windows)


def _window_only_rows(clip_id: str, uri: str, clip, indices: np.ndarray, spans: list, window_frames, chunk: int = 4):
    """Each window's row alone (on its first sampled frame, whose own frame is not decoded), a few
    windows at a time."""
    info = clip.info
    for start in range(0, len(spans), chunk):
        here = spans[start : start + chunk]
        first = indices[[w.row for w in here]]
        rows = _frame_rows(
            clip_id,
            uri,
            video.FrameChunk(first, np.asarray(clip.timestamps)[first], np.zeros((len(here), 0, 0, 3), np.uint8)),
            info,
            expected=len(spans),
        )
        rows["width"][:], rows["height"][:] = info.width, info.height
        rows.update(_window_rows(window_frames, here))
        yield rows


def _window_rows(window_frames, spans: list) -> dict[str, np.ndarray]:
    """The window columns of a chunk's rows (`spans[i]`: row i's window, None when it starts none);
    `window_frames` yields each window's frames in order."""
    empty = np.zeros((0, 0, 0, 3), np.uint8)
    frames = [empty if w is None else next(window_frames) for w in spans]
    return {
        "window_frames": column(frames),
        "window_start_s": np.array([np.nan if w is None else w.start_s for w in spans]),
        "window_end_s": np.array([np.nan if w is None else w.end_s for w in spans]),
    }


def _shrink(frames: np.ndarray, side: int = WINDOW_SIDE) -> np.ndarray:
    """Frames [k, H, W, 3] with the longest side at most `side` (antialiased)."""
    from PIL import Image

    h, w = frames.shape[1:3]
    scale = side / max(h, w)
    if scale >= 1:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames])


def _with_next(chunks):
    """Each chunk with the one after it (None for the last), reading one chunk ahead."""
    previous = None
    for chunk in chunks:
        if previous is not None:
            yield previous, chunk
        previous = chunk
    if previous is not None:
        yield previous, None


def _next_frames(chunk: video.FrameChunk, following: video.FrameChunk | None) -> np.ndarray:
    """Row i's successor; the clip's last frame gets an empty one (it has no forward flow)."""
    successors = list(chunk.frames[1:]) + [
        following.frames[0] if following is not None else np.zeros((0, 0, 3), np.uint8)
    ]
    return column(successors)


def _frame_rows(clip_id: str, uri: str, chunk: video.FrameChunk, info: video.VideoInfo, expected: int) -> dict:
    n = len(chunk.indices)
    return {
        "clip_id": np.array([clip_id] * n, dtype=object),
        "clip_uri": np.array([uri] * n, dtype=object),
        "frame_index": chunk.indices.astype(np.int64),
        "timestamp_s": chunk.timestamps.astype(np.float64),
        "width": np.full(n, chunk.frames.shape[2], dtype=np.int32),
        "height": np.full(n, chunk.frames.shape[1], dtype=np.int32),
        "frame": chunk.frames,
        "expected": np.full(n, expected, dtype=np.int64),
        "source_frames": np.full(n, info.source_frames, dtype=np.int64),
        "fps": np.full(n, info.fps, dtype=np.float64),
        "duration_s": np.full(n, info.duration_s, dtype=np.float64),
        ERROR: np.array([""] * n, dtype=object),
    }


def _error_row(clip_id: str, uri: str, reason: str, expected: int) -> dict:
    return {
        "clip_id": np.array([clip_id], dtype=object),
        "clip_uri": np.array([uri], dtype=object),
        "frame_index": np.array([-1], dtype=np.int64),
        "timestamp_s": np.array([np.nan]),
        "width": np.zeros(1, dtype=np.int32),
        "height": np.zeros(1, dtype=np.int32),
        "frame": np.zeros((1, 0, 0, 3), dtype=np.uint8),
        "expected": np.array([expected], dtype=np.int64),
        "source_frames": np.zeros(1, dtype=np.int64),
        "fps": np.array([np.nan]),
        "duration_s": np.array([np.nan]),
        ERROR: np.array([reason], dtype=object),
    }
