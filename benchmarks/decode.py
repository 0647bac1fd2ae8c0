"""Decode frames per second on one core: decord + PyAV against torchcodec, every frame and sparse.

    python benchmarks/decode.py [--rounds 3] [--long-frames 600]

Clips: every fixture clip in ../shared/fixtures/videos, and a generated 1080p H.264 clip with a
keyframe every 2 s and B-frames (what a camera or a transcoder writes; `--long-frames` frames at
30 fps). For each decoder (`enrich.ops.video.open_clip`, as the decode stage calls it) it opens and
indexes the clip, then decodes every frame, or the frames `--fps 2` or `--fps 0.25` samples (one
frame in 15, and one in 120 at 30 fps), in chunks of 8. The
process is pinned to one core, and each decoder uses one thread. Prints the median seconds over the
rounds and the sampled frames per second of each, and the ratio torchcodec / decord.

A sparse sample skips decoding only where the decoder seeks to the keyframe before each sampled
frame instead of decoding every frame in between, and only where samples are further apart than
keyframes (at 2 fps and a keyframe every 2 s, every frame up to the last sample must be decoded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.ops import video  # noqa: E402
from enrich.ops.sampling import sample_indices  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "videos"


def long_clip(path: Path, frames: int) -> Path:
    """1080p, 30 fps, keyframe every 60 frames, 2 B-frames: a moving texture, so it is not trivial."""
    import av

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1080 + 64, 1920 + 64, 3), dtype=np.uint8)
    texture = (texture // 4 + np.roll(texture, 1, axis=0) // 4 + np.roll(texture, 1, axis=1) // 2).astype(np.uint8)
    with av.open(str(path), "w") as container:
        params = "keyint=60:min-keyint=60:scenecut=0:bframes=2"
        stream = container.add_stream("libx264", rate=30, options={"x264-params": params, "preset": "veryfast"})
        stream.height, stream.width, stream.pix_fmt = 1080, 1920, "yuv420p"
        for i in range(frames):
            dy, dx = (i * 2) % 64, (i * 3) % 64
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[dy : dy + 1080, dx : dx + 1920]), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_once(path: Path, decoder: str, fps: float | None) -> tuple[float, int]:
    started = time.perf_counter()
    clip = video.open_clip(str(path), decoder)
    indices = sample_indices(clip.timestamps, fps, None)
    n = sum(len(chunk.indices) for chunk in clip.chunks(indices, 8))
    return time.perf_counter() - started, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-frames", type=int, default=600)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        clips = sorted(FIXTURES.glob("*.mp4")) + [long_clip(Path(tmp) / "generated_1080p_gop60.mp4", args.long_frames)]
        print(f"one core, median of {args.rounds} rounds; frames: the sampled frames")
        head = ("clip", "sampling", "frames", "decord s", "fr/s", "torchcodec s", "fr/s", "ratio")
        print("{:<28} {:<8} {:>6} {:>9} {:>7} {:>12} {:>7} {:>6}".format(*head))
        for path in clips:
            for label, fps in (("every", None), ("2 fps", 2.0), ("0.25 fps", 0.25)):
                times = {}
                for decoder in video.DECODERS:
                    decode_once(path, decoder, fps)  # warm-up: imports, page cache
                    runs = [decode_once(path, decoder, fps) for _ in range(args.rounds)]
                    times[decoder] = statistics.median(t for t, _ in runs), runs[0][1]
                (a, n), (b, _) = times["decord"], times["torchcodec"]
                row = (path.name, label, n, a, n / a, b, n / b, a / b)
                print("{:<28} {:<8} {:>6} {:>9.3f} {:>7.1f} {:>12.3f} {:>7.1f} {:>5.2f}x".format(*row))


if __name__ == "__main__":
    main()
