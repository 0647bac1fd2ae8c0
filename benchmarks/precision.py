"""fp32 against bf16 on this machine's CPU: the measurement behind `--STAGE-precision auto`.

    python benchmarks/precision.py [--frames 4] [--rounds 3] [--flow]

Depth Anything V2 ViT-S (random weights, real size) on one 720p frame of the fixture clip, as a CPU
actor runs it (one single-threaded call per core at once) and as one call with every core's
threads; optionally RAFT large under bf16 autocast (`--flow`, slow on CPU). Rounds alternate the
precisions so both see the same machine; prints the medians, the speed-up, how far bf16's maps are
from fp32's (relative to the map's range), and whether the CPU has AMX or AVX-512 bf16, which is
what `enrich.ops.common.torch_dtype` looks at.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from cpu_sharing import ROOT, per_frame  # puts the repository root on sys.path, for enrich

from enrich.ops import common, video
from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator
from enrich.weights import ModelRef, materialize


def depth(frame: np.ndarray, frames: int, rounds: int) -> None:
    folder = materialize(ModelRef("random:depth-anything-v2-small", "random", "depth-anything-v2-small", "seed0"),
                         RANDOM_BUILDERS)  # fmt: skip
    models = {name: DepthEstimator(folder, device="cpu", precision=name) for name in ("fp32", "bf16")}
    a, b = (models[name].predict([frame])[0] for name in ("fp32", "bf16"))
    spread = float(np.percentile(a, 99) - np.percentile(a, 1))
    diff = np.abs(a - b) / spread
    off = f"{np.median(diff):.2%} (median), {np.percentile(diff, 99):.2%} (99th percentile) of the map's range"
    print(f"Depth Anything V2 ViT-S, one {frame.shape[1]}x{frame.shape[0]} frame: bf16 differs from fp32 by {off}")
    cores = os.cpu_count() or 1
    for calls, threads in ((cores, 1), (1, cores)):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(rounds):
            for name, model in models.items():
                times[name].append(per_frame(model, frame, calls, threads, frames))
        fp32, bf16 = (statistics.median(t) for t in times.values())
        print(f"  {calls} call(s) x {threads} thread(s), s/frame: fp32 {fp32:.2f}, bf16 {bf16:.2f} "
              f"(bf16 {fp32 / bf16:.2f}x the frames/s)")  # fmt: skip


def flow(frame: np.ndarray, second: np.ndarray, rounds: int) -> None:
    import tempfile

    from enrich.stages.flow.model import FlowEstimator, build_random

    path = os.path.join(tempfile.mkdtemp(), "raft_large.pt")
    build_random("raft_large", path)
    models = {name: FlowEstimator("raft_large", path, device="cpu", precision=name) for name in ("fp32", "bf16")}
    pair = [(frame, second)]
    a, b = (models[name].predict(pair)[0] for name in ("fp32", "bf16"))
    error = np.linalg.norm(a - b, axis=-1)
    print(f"RAFT large, one {frame.shape[1]}x{frame.shape[0]} pair: bf16 autocast differs from fp32 by "
          f"{np.median(error):.3f} px (median), {np.percentile(error, 99):.3f} px (99th percentile)")  # fmt: skip
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    torch.set_num_threads(os.cpu_count() or 1)
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.predict(pair)
            times[name].append(time.perf_counter() - started)
    fp32, bf16 = (statistics.median(t) for t in times.values())
    print(f"  one call, s/pair: fp32 {fp32:.2f}, bf16 {bf16:.2f} (bf16 {fp32 / bf16:.2f}x the pairs/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT.parent / "shared" / "fixtures" / "videos" / "tokyo_walk.mp4"))
    parser.add_argument("--frames", type=int, default=4, help="frames per depth measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flow", action="store_true", help="also RAFT large (about a minute per pair on CPU)")
    args = parser.parse_args()
    frames = video.open_video(args.clip)
    first, second = frames[0].asnumpy(), frames[1].asnumpy()
    print(f"CPU: {common.cpu_bf16()}; torch {torch.__version__}; auto on CPU means "
          f"{common.precision_name(common.torch_dtype('auto', 'cpu'))}")  # fmt: skip
    depth(first, args.frames, args.rounds)
    if args.flow:
        flow(first, second, args.rounds)


if __name__ == "__main__":
    main()
