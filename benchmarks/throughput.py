"""Throughput: model only, `enrich run` end to end, and the naive loop, on the same frames.

    python benchmarks/throughput.py                       # depth, ViT-S, CPU, the fixture clips
    python benchmarks/throughput.py --arch large          # ViT-L (use on a GPU machine)
    python benchmarks/throughput.py --stages depth,flow,pose --skip-naive

Random weights of the real architectures at the real input sizes cost the same as real weights:
Depth Anything V2 (ViT-S/B/L), RAFT large, ViTPose-B with an RT-DETR R50 detector.
Prints each stage's model-only rate (in-process, on frames already in memory), the whole `enrich
run` command's rate and the naive depth loop's (`naive_depth.py`, depth only; both timed as whole
commands, each a fresh Python process), each command's time on a single frame (its fixed cost) and
its rate on the frames after the first, the ratios, and a per-stage breakdown measured in-process.
Each command is timed just after an untimed run of itself on one frame (`--cold` skips it).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.ops import video  # noqa: E402
from enrich.ops.quantize import encode_png16, quantize  # noqa: E402
from enrich.ops.sampling import sample_indices  # noqa: E402
from enrich.stages.depth import DEFAULT_BATCH_SIZE  # noqa: E402
from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator  # noqa: E402
from enrich.weights import ModelRef, materialize  # noqa: E402


def sampled_frames(clips: list[Path], fps: float, max_frames: int) -> tuple[list[list[np.ndarray]], float]:
    """The sampled frames of each clip, and the seconds decoding took."""
    per_clip, started = [], time.perf_counter()
    for clip in clips:
        opened = video.open_clip(str(clip))
        indices = sample_indices(opened.timestamps, fps, max_frames)
        per_clip.append([f for chunk in opened.chunks(indices, 8) for f in chunk.frames])
    return per_clip, time.perf_counter() - started


def by_size(frames: list[np.ndarray], batch: int) -> list[list[np.ndarray]]:
    """Batches as the pipeline forms them: consecutive frames (clips are contiguous)."""
    return [frames[i : i + batch] for i in range(0, len(frames), batch)]


def model_only(model_dir: str, frames: list[np.ndarray], batch: int, precision: str) -> tuple[float, list]:
    """Depth Anything: image processor, forward pass and post-processing, batched as the stage does."""
    estimator = DepthEstimator(model_dir, precision=precision)
    estimator.predict(frames[:1])  # warm-up
    started = time.perf_counter()
    maps = []
    for group in by_size(frames, batch):
        maps.extend(estimator.predict(group))
    _sync()
    return time.perf_counter() - started, maps


def flow_only(per_clip: list[list[np.ndarray]], batch: int) -> tuple[float, int]:
    """RAFT large on each frame and its successor in the clip, forward and backward, as the flow
    stage pairs them and runs them by default (`--no-flow-backward` halves its work)."""
    from enrich.stages.flow import RANDOM_BUILDERS as FLOW_BUILDERS
    from enrich.stages.flow import WEIGHTS_FILE
    from enrich.stages.flow.model import FlowEstimator

    folder = materialize(ModelRef("random:raft_large", "random", "raft_large", "seed0"), FLOW_BUILDERS)
    estimator = FlowEstimator("raft_large", os.path.join(folder, WEIGHTS_FILE))
    pairs = [pair for frames in per_clip for pair in itertools.pairwise(frames)]
    estimator.predict(pairs[:1])
    started = time.perf_counter()
    for i in range(0, len(pairs), batch):
        group = pairs[i : i + batch]
        estimator.predict(group)
        estimator.predict([(b, a) for a, b in group])
    _sync()
    return time.perf_counter() - started, len(pairs)


def pose_only(frames: list[np.ndarray], batch: int) -> tuple[float, int]:
    """RT-DETR R50 then ViTPose-B on every person it finds (the detector is biased to find some)."""
    from enrich.stages.pose.model import RANDOM_BUILDERS as POSE_BUILDERS
    from enrich.stages.pose.model import PoseEstimator

    pose = materialize(ModelRef("random:vitpose-base", "random", "vitpose-base", "seed0"), POSE_BUILDERS)
    detector = materialize(ModelRef("random:rtdetr-r50", "random", "rtdetr-r50", "seed0"), POSE_BUILDERS)
    estimator = PoseEstimator(pose, detector)
    estimator.predict(frames[:1])
    started, people = time.perf_counter(), 0
    for group in by_size(frames, batch):
        people += sum(len(found) for found in estimator.predict(group))
    _sync()
    return time.perf_counter() - started, people


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def encode_only(maps: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for depth in maps:
        encode_png16(quantize(depth)[0])
    return time.perf_counter() - started


SMOKE_MODELS = {
    "flow": ["--flow-model", "random:raft_large"],
    "pose": ["--pose-model", "random:vitpose-base", "--detector-model", "random:rtdetr-r50"],
}


def end_to_end(
    clips_dir: Path, model: str, fps: float, max_frames: int, batch: int, out: str, stages: list[str]
) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "enrich",
        "run",
        str(clips_dir),
        out,
        "--depth-model",
        model,
        "--fps",
        str(fps),
        "--max-frames-per-clip",
        str(max_frames),
        "--depth-batch-size",
        str(batch),
        "--quiet",
        "--force",
        "--stages",
        ",".join(stages),
    ]
    cmd += [arg for stage in stages for arg in SMOKE_MODELS.get(stage, [])]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"enrich run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return seconds, proc.stdout.strip().splitlines()[0]


def naive_loop(clips: list[Path], model_dir: str, fps: float, max_frames: int, out: str) -> tuple[float, int]:
    """What a user would write (`naive_depth.py`), timed like `enrich run`: as a whole command."""
    script = Path(__file__).with_name("naive_depth.py")
    cmd = [sys.executable, str(script), model_dir, out, str(fps), str(max_frames), *map(str, clips)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"naive loop failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return seconds, int(proc.stdout.strip().splitlines()[-1])


def one_frame(clip: Path, command: Callable[[Path, str], object], cold: bool) -> float:
    """Seconds `command(folder, out)` takes on a folder holding only `clip` (callers ask it for one
    frame): the command's fixed cost (start-up, model load, shutdown) plus one frame.

    Unless `cold`, an untimed run of the same comes first, and the full run is timed just after
    this one: both timed commands then start from the same warm page cache. Without it, whichever
    ran longer ago reads its libraries from disk (on a VM that evicts idle file pages this alone
    was seen to cost up to a minute)."""
    with tempfile.TemporaryDirectory() as one:
        os.symlink(clip, os.path.join(one, clip.name))
        os.makedirs(os.path.join(one, "out"))
        if not cold:
            command(Path(one), os.path.join(one, "out"))
        started = time.perf_counter()
        command(Path(one), os.path.join(one, "out"))
        return time.perf_counter() - started


def after_first(frames: int, seconds: float, one_frame_s: float) -> float:
    """Frames/s of the frames beyond the first: what a long run approaches."""
    return (frames - 1) / (seconds - one_frame_s)


def way_line(way: str, frames: int, seconds: float, one_frame_s: float | None = None) -> str:
    line = f"{way:<28} {frames / seconds:>9.3f} {seconds:>8.1f}"
    if one_frame_s is not None:
        line += f" {one_frame_s:>10.1f} {after_first(frames, seconds, one_frame_s):>9.3f}"
    return line


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "fixtures" / "videos")
    parser.add_argument("--arch", choices=["small", "base", "large"], default="small", help="Depth Anything V2 size")
    parser.add_argument("--stages", default="depth", help="comma-separated subset of depth,flow,pose")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max-frames-per-clip", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="depth batch; default: enrich's, 1 CPU, 16 GPU")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--cold", action="store_true", help="no untimed one-frame run of each command before it is timed"
    )
    args = parser.parse_args()
    stages = [s for s in ("depth", "flow", "pose") if s in args.stages.split(",")]
    batch = args.batch_size or DEFAULT_BATCH_SIZE["gpu" if _cuda() else "cpu"]
    device_kind = "gpu" if _cuda() else "cpu"

    clips = sorted(p for p in args.clips.iterdir() if p.suffix == ".mp4")
    spec = f"random:depth-anything-v2-{args.arch}"
    model_dir = materialize(ModelRef(spec, "random", f"depth-anything-v2-{args.arch}", "seed0"), RANDOM_BUILDERS)
    per_clip, decode_s = sampled_frames(clips, args.fps, args.max_frames_per_clip)
    frames = [f for clip_frames in per_clip for f in clip_frames]
    n = len(frames)
    device = "cuda" if _cuda() else f"cpu ({os.cpu_count()} cores)"
    print(
        f"stages {','.join(stages)} on {device}: {n} frames from {len(clips)} clips "
        f"(fps {args.fps:g}, <= {args.max_frames_per_clip}/clip); depth {spec}"
    )

    only: dict[str, tuple[float, int, str]] = {}  # stage -> (seconds, items, unit)
    maps = []
    if "depth" in stages:
        model_s, maps = model_only(model_dir, frames, batch, args.precision)
        only["depth"] = (model_s, n, "frames")
    if "flow" in stages:
        from enrich.stages.flow import DEFAULT_BATCH_SIZE as FLOW_BATCH

        seconds, pairs = flow_only(per_clip, FLOW_BATCH[device_kind])
        only["flow"] = (seconds, pairs, "pairs")
    if "pose" in stages:
        from enrich.stages.pose import DEFAULT_BATCH_SIZE as POSE_BATCH

        seconds, people = pose_only(frames, POSE_BATCH[device_kind])
        only["pose"] = (seconds, n, f"frames ({people} people)")
    encode_s = encode_only(maps) if maps else 0.0
    run_naive = not args.skip_naive and stages == ["depth"]
    with tempfile.TemporaryDirectory() as out:
        e2e_1 = one_frame(clips[0], lambda f, o: end_to_end(f, spec, 1.0, 1, batch, o, stages), args.cold)
        e2e_s, e2e_line = end_to_end(args.clips, spec, args.fps, args.max_frames_per_clip, batch, out, stages)
        naive_1, naive_s, naive_n = 0.0, 0.0, 0
        if run_naive:
            naive_1 = one_frame(clips[0], lambda f, o: naive_loop([clips[0]], model_dir, 1.0, 1, o), args.cold)
            naive_s, naive_n = naive_loop(clips, model_dir, args.fps, args.max_frames_per_clip, out)

    print()
    print("model only, in-process:")
    for stage, (seconds, items, unit) in only.items():
        print(f"  {stage:<6} {items / seconds:>8.3f} {unit.split()[0]}/s  ({items} {unit} in {seconds:.1f}s)")
    all_models_s = sum(seconds for seconds, _, _ in only.values())
    print(f"  all    {n / all_models_s:>8.3f} frames/s  (the stages one after another: {all_models_s:.1f}s)")
    print()
    # "one frame": the whole command on one frame of one clip, i.e. its fixed cost (start-up, model
    # load, shutdown) plus a frame; "after it": the rate of the frames beyond the first, which is
    # what a long run approaches. The naive loop samples with a rounded frame step, which can pick
    # a few frames more or fewer than enrich's timestamp sampling; its rates are per frame it wrote.
    print(f"{'way':<28} {'frames/s':>9} {'seconds':>8} {'one frame':>10} {'after it':>9}")
    print(way_line("model(s) only, summed", n, all_models_s))
    print(way_line("enrich run (whole command)", n, e2e_s, e2e_1))
    if naive_s:
        other = "" if naive_n == n else f"  ({naive_n} frames: its own sampling)"
        print(way_line("naive loop", naive_n, naive_s, naive_1) + other)
    print()
    print(f"enrich run / model(s) only: {all_models_s / e2e_s:.2f}")
    if naive_s:
        print(
            f"enrich run / naive loop: {(n / e2e_s) / (naive_n / naive_s):.2f} (frames/s), "
            f"{after_first(n, e2e_s, e2e_1) / after_first(naive_n, naive_s, naive_1):.2f} after the first frame"
        )
    print(f"(enrich run: {e2e_line})")
    print()
    print("per-stage cost, in-process, ms per frame:")
    rows = [("decode", decode_s)] + [(f"{stage} model", seconds) for stage, (seconds, _, _) in only.items()]
    if maps:
        rows.append(("depth quantise + PNG", encode_s))
    for stage, seconds in rows:
        print(f"  {stage:<28} {1000 * seconds / n:>8.1f}")


if __name__ == "__main__":
    main()
