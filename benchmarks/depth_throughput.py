"""Depth throughput: model only, `enrich run` end to end, and the naive loop, on the same frames.

    python benchmarks/depth_throughput.py                       # ViT-S, CPU, the fixture clips
    python benchmarks/depth_throughput.py --arch large          # ViT-L (use on a GPU machine)

Random weights of the real architecture at the real input size cost the same as real weights.
Prints frames/s for each way, the ratios, and a per-stage breakdown measured in-process.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.models import ModelRef, materialize  # noqa: E402
from enrich.ops import video  # noqa: E402
from enrich.ops.depth import RANDOM_BUILDERS, DepthEstimator  # noqa: E402
from enrich.ops.quantize import encode_png16, quantize  # noqa: E402
from enrich.stages.depth import DEFAULT_BATCH_SIZE  # noqa: E402


def sampled_frames(clips: list[Path], fps: float, max_frames: int) -> tuple[list[np.ndarray], float]:
    frames, started = [], time.perf_counter()
    for clip in clips:
        reader = video.open_video(str(clip))
        _, indices, timestamps = video.sampled(reader, fps, max_frames)
        for chunk in video.read_chunks(reader, indices, timestamps, 8):
            frames.extend(chunk.frames)
    return frames, time.perf_counter() - started


def by_size(frames: list[np.ndarray], batch: int) -> list[list[np.ndarray]]:
    """Batches as the pipeline forms them: consecutive frames (clips are contiguous)."""
    return [frames[i : i + batch] for i in range(0, len(frames), batch)]


def model_only(model_dir: str, frames: list[np.ndarray], batch: int, precision: str) -> tuple[float, list]:
    estimator = DepthEstimator(model_dir, precision=precision)
    estimator.predict(frames[:1])  # warm-up
    started = time.perf_counter()
    maps = []
    for group in by_size(frames, batch):
        maps.extend(estimator.predict(group))
    _sync()
    return time.perf_counter() - started, maps


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def encode_only(maps: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for depth in maps:
        encode_png16(quantize(depth)[0])
    return time.perf_counter() - started


def end_to_end(clips_dir: Path, model: str, fps: float, max_frames: int, batch: int, out: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "enrich", "run", str(clips_dir), out, "--depth-model", model, "--fps", str(fps),
           "--max-frames-per-clip", str(max_frames), "--depth-batch-size", str(batch), "--quiet", "--force"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"enrich run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return seconds, proc.stdout.strip().splitlines()[0]


def naive_loop(clips: list[Path], model_dir: str, fps: float, max_frames: int, out: str) -> tuple[float, int]:
    """What a user would write: decode, pipeline() one frame at a time, PIL PNG, pandas Parquet."""
    import decord
    import pandas as pd
    from PIL import Image
    from transformers import pipeline

    started = time.perf_counter()
    pipe = pipeline("depth-estimation", model=model_dir, device=0 if _cuda() else -1)
    rows = []
    for clip in clips:
        reader = decord.VideoReader(str(clip))
        step = max(1, round(reader.get_avg_fps() / fps))
        for index in list(range(0, len(reader), step))[:max_frames]:
            frame = reader[index].asnumpy()
            depth = pipe(Image.fromarray(frame))["predicted_depth"].numpy()
            lo, hi = float(depth.min()), float(depth.max())
            codes = ((depth - lo) / max(hi - lo, 1e-12) * 65535).round().astype(np.uint16)
            buffer = io.BytesIO()
            Image.fromarray(codes).save(buffer, format="PNG")
            rows.append({"clip": clip.name, "frame_index": index, "depth_png": buffer.getvalue(), "lo": lo, "hi": hi})
    pd.DataFrame(rows).to_parquet(os.path.join(out, "naive.parquet"))
    return time.perf_counter() - started, len(rows)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "fixtures" / "videos")
    parser.add_argument("--arch", choices=["small", "base", "large"], default="small")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max-frames-per-clip", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="default: enrich's, 1 on CPU, 16 on GPU")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    batch = args.batch_size or DEFAULT_BATCH_SIZE["gpu" if _cuda() else "cpu"]

    clips = sorted(p for p in args.clips.iterdir() if p.suffix == ".mp4")
    spec = f"random:depth-anything-v2-{args.arch}"
    model_dir = materialize(ModelRef(spec, "random", f"depth-anything-v2-{args.arch}", "seed0"), RANDOM_BUILDERS)
    frames, decode_s = sampled_frames(clips, args.fps, args.max_frames_per_clip)
    n = len(frames)
    device = "cuda" if _cuda() else f"cpu ({os.cpu_count()} cores)"
    print(f"{spec} on {device}: {n} frames from {len(clips)} clips (fps {args.fps:g}, <= {args.max_frames_per_clip}/clip)")

    model_s, maps = model_only(model_dir, frames, batch, args.precision)
    encode_s = encode_only(maps)
    with tempfile.TemporaryDirectory() as out:
        e2e_s, e2e_line = end_to_end(args.clips, spec, args.fps, args.max_frames_per_clip, batch, out)
        naive_s, naive_n = (None, 0) if args.skip_naive else naive_loop(clips, model_dir, args.fps,
                                                                           args.max_frames_per_clip, out)

    rate = {"model only": n / model_s, "enrich run": n / e2e_s}
    if naive_s:
        assert naive_n == n, f"naive loop sampled {naive_n} frames, enrich {n}"
        rate["naive loop"] = n / naive_s
    print()
    print(f"{'way':<12} {'frames/s':>9} {'seconds':>8}")
    for way, seconds in (("model only", model_s), ("enrich run", e2e_s), ("naive loop", naive_s)):
        if seconds:
            print(f"{way:<12} {n / seconds:>9.3f} {seconds:>8.1f}")
    print()
    print(f"enrich run / model only: {rate['enrich run'] / rate['model only']:.2f}")
    if naive_s:
        print(f"enrich run / naive loop: {rate['enrich run'] / rate['naive loop']:.2f}")
    print(f"(enrich run: {e2e_line})")
    print()
    print("per-stage cost, in-process, ms per frame:")
    for stage, seconds in (("decode", decode_s), ("depth (pre + model + post)", model_s), ("quantise + PNG", encode_s)):
        print(f"  {stage:<28} {1000 * seconds / n:>8.1f}")


if __name__ == "__main__":
    main()
