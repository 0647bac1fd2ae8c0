"""Builders for test inputs: tiny models of the real architectures and generated clips."""

from __future__ import annotations

import ctypes.util
import shutil
from pathlib import Path

import numpy as np
import pytest


def save_tiny_depth_anything(folder: Path, metric: bool = False, size: int = 70) -> Path:
    """Same classes as Depth Anything V2 (DINOv2 backbone + DPT head), tiny and random."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    from enrich.stages.depth.model import depth_anything_processor

    backbone = Dinov2Config(
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=4,
        intermediate_size=64,
        image_size=size,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="metric" if metric else "relative",
        max_depth=20 if metric else 1,
    )
    torch.manual_seed(1)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    depth_anything_processor(size).save_pretrained(folder)
    return folder


def write_video(path: Path, frames: np.ndarray, fps: int = 10, faststart: bool = True) -> Path:
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gop_video(path: Path, n: int, keyframe_every: int, fps: int = 30) -> Path:
    """An H.264 clip with a keyframe every `keyframe_every` frames and B-frames between them; frame i
    is flat grey at level 2 i + 40, so a decoded frame tells which frame it is."""
    import av

    with av.open(str(path), "w") as container:
        params = f"keyint={keyframe_every}:min-keyint={keyframe_every}:scenecut=0:bframes=2"
        stream = container.add_stream("libx264", rate=fps, options={"x264-params": params})
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        for i in range(n):
            frame = np.full((64, 96, 3), 2 * i + 40, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gradient_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([np.dstack([(x * 4 + i * 8) % 256, (y * 5) % 256, np.full_like(x, 128)]) for i in range(n)]).astype(
        np.uint8
    )


def garble_media_data(path: Path) -> bytes:
    """The clip with the middle 60% of its coded frames overwritten: the index is intact, the
    frames are not, so it opens but fails while decoding."""
    import struct

    data = bytearray(path.read_bytes())
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"mdat":
            start, end = pos + size // 5, pos + size * 4 // 5
            data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
            return bytes(data)
        pos += size
    raise ValueError(f"no mdat box in {path}")


# torchcodec loads FFmpeg's shared libraries from the system; .ci/run installs them.
needs_ffmpeg_libraries = pytest.mark.skipif(
    ctypes.util.find_library("avcodec") is None,
    reason="torchcodec needs FFmpeg's shared libraries (apt-get install ffmpeg)",
)

BAD_CLIPS = {
    "empty.mp4": "decode: empty file (0 bytes)",
    "not_a_video.mp4": "decode: cannot open as a video",
    "truncated.mp4": "decode:",
    "audio_only.mp4": "decode: no video stream",
    "corrupt.mp4": "decode: corrupt or truncated video stream",
}


def write_bad_clips(folder: Path, fixtures: Path) -> Path:
    shutil.copy(fixtures / "tiny_2fps.mp4", folder / "good.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "not_a_video.mp4").write_text("this is a text file with a video extension\n")
    full = write_video(folder / "_full.mp4", gradient_frames(30))
    data = full.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    full.unlink()
    write_audio_only(folder / "audio_only.mp4")
    (folder / "corrupt.mp4").write_bytes(garble_media_data(fixtures / "sintel_scene_cuts_10s.mp4"))
    (folder / "notes.txt").write_text("not a clip: ignored\n")
    return folder


def stage_clip(staging: Path, clip_id: str, frames: list[dict], part_size: int = 3, size: tuple | None = None):
    """Stage a clip's rows the way the pipeline does (encode-depth, the temporal summary, write), in
    parts of `part_size` frames written last part first, so the commit must put them back in order.

    Each frame is a dict with `depth` (a float map), `thumb` (RGB uint8) and optionally `flags`,
    `audit` and `depth_png` (bytes that replace the encoded PNG, e.g. a large stand-in: the commit
    never decodes it). `size` (height, width): the frame size rows claim (default: the depth map's)."""
    import json

    from enrich.ops.quantize import quantize
    from enrich.stages.audit import thumbnail
    from enrich.stages.base import ERROR, column
    from enrich.stages.depth import EncodeDepth
    from enrich.stages.temporal import Summarize
    from enrich.stages.write import WriteParts

    def quantized(maps):  # what the depth stage hands on: codes, scale and offset
        found = [quantize(m) for m in maps]
        return {
            "depth_codes": column([codes for codes, _, _ in found]),
            "depth_scale": np.array([scale for _, scale, _ in found]),
            "depth_offset": np.array([offset for _, _, offset in found]),
        }

    n = len(frames)
    height, width = size or frames[0]["depth"].shape
    writer = WriteParts(str(staging), constants={"run_id": "test-run", "config_hash": "test"})
    for start in reversed(range(0, n, part_size)):
        rows = list(range(start, min(n, start + part_size)))
        k = len(rows)

        def each(fn, dtype=object, rows=rows):
            return np.array([fn(frames[i]) for i in rows], dtype=dtype)

        batch = {
            "clip_id": np.array([clip_id] * k, dtype=object),
            "clip_uri": np.array([f"/clips/{clip_id}"] * k, dtype=object),
            "frame_index": np.array(rows, dtype=np.int64),
            "timestamp_s": np.array(rows, dtype=np.float64) / 10,
            "width": np.full(k, width, np.int32),
            "height": np.full(k, height, np.int32),
            **quantized([frames[i]["depth"] for i in rows]),
            "depth_kind": np.array(["relative_disparity"] * k, dtype=object),
            "thumb_jpeg": each(lambda f: thumbnail(f["thumb"])),
            "flags": each(lambda f: json.dumps(f.get("flags", {}))),
            "audit": each(lambda f: json.dumps(f.get("audit", {}))),
            "expected": np.full(k, n, np.int64),
            "source_frames": np.full(k, n, np.int64),
            "fps": np.full(k, 10.0),
            "duration_s": np.full(k, n / 10),
            ERROR: np.array([""] * k, dtype=object),
        }
        batch = Summarize()(EncodeDepth()(batch))
        for j, i in enumerate(rows):
            if "depth_png" in frames[i]:
                batch["depth_png"][j] = frames[i]["depth_png"]
        writer(batch)


def assert_batched_equals_one_by_one(predict, items, compare, sizes=(2, 3)) -> list:
    """The checker every batched model op gets (as torchvision checks its kernels): `predict(items)`
    gives each item what `predict([item])` gives it alone, for the whole list and for sub-batches of
    each of `sizes`, and leaves its inputs as they were. `compare(got, alone)` asserts one item's
    results equal (within the op's float tolerance). Returns the results of items one by one."""
    before = [np.array(item, copy=True) if isinstance(item, np.ndarray) else item for item in items]
    alone = [predict([item])[0] for item in items]
    batches = [list(range(len(items)))] + [
        list(range(start, min(start + size, len(items)))) for size in sizes for start in range(0, len(items), size)
    ]
    for batch in batches:
        got = predict([items[i] for i in batch])
        assert len(got) == len(batch)
        for i, result in zip(batch, got, strict=True):
            compare(result, alone[i])
    for item, copy in zip(items, before, strict=True):
        if isinstance(item, np.ndarray):
            np.testing.assert_array_equal(item, copy, err_msg="the op changed its input")
    return alone
