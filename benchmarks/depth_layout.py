"""Why the CPU depth model runs on channels-last weights (`enrich.stages.depth.model.DepthEstimator`):
seconds per frame with the default (contiguous) weights and with channels-last ones, on one 720p
frame, Depth Anything V2 ViT-S (random weights, real size), and how far their maps differ.

    python benchmarks/depth_layout.py [--frames 4] [--rounds 3]

Measures, round after round so that both layouts see the same machine: one call with all cores'
threads, and one single-threaded call per core at once (what a CPU actor runs). Prints the median
of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import numpy as np
import torch
from cpu_sharing import ROOT, per_frame  # puts the repository root on sys.path, for enrich

from enrich.ops import video
from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator
from enrich.weights import ModelRef, materialize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "fixtures" / "videos" / "tokyo_walk.mp4")
    parser.add_argument("--frames", type=int, default=4, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    folder = materialize(ModelRef("random:depth-anything-v2-small", "random", "depth-anything-v2-small", "seed0"),
                         RANDOM_BUILDERS)  # fmt: skip
    frame = video.open_video(str(args.clip))[0].asnumpy()
    last = DepthEstimator(folder)  # channels-last on CPU, as enrich runs it
    default = DepthEstimator(folder)
    default.model = default.model.to(memory_format=torch.contiguous_format)
    a, b = default.predict([frame])[0], last.predict([frame])[0]
    print(f"Depth Anything V2 ViT-S on one {frame.shape[1]}x{frame.shape[0]} frame, {cores} cores, s/frame:")
    print(f"  maps differ by at most {np.abs(a - b).max() / np.abs(a).max():.1e} of the largest value")
    for calls, threads in ((1, cores), (cores, 1)):
        times = {"contiguous": [], "channels-last": []}
        for _ in range(args.rounds):
            times["contiguous"].append(per_frame(default, frame, calls, threads, args.frames))
            times["channels-last"].append(per_frame(last, frame, calls, threads, args.frames))
        base, fast = (statistics.median(t) for t in times.values())
        print(f"  {calls} call(s) x {threads} thread(s): contiguous {base:.2f}, channels-last {fast:.2f} "
              f"({base / fast - 1:+.0%} frames/s)")  # fmt: skip


if __name__ == "__main__":
    main()
