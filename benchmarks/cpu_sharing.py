"""How a CPU model stage should share cores, measured on one 720p frame with Depth Anything V2
ViT-S (random weights, real size). Backs the CPU defaults in `enrich/resources.py` and
`enrich.runtime.yield_to_models`:

    python benchmarks/cpu_sharing.py [--frames 4]

Prints seconds per frame for: one forward pass with all cores' threads; one single-threaded pass
per core at once, in threads of one process (what a CPU actor runs); the same while a competing
process uses 30% of a core, at equal priority and at nice 10 (what a CPU task takes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from enrich.ops import video  # noqa: E402
from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator  # noqa: E402
from enrich.weights import ModelRef, materialize  # noqa: E402

COMPETITOR = """
import time, numpy as np
a = np.random.rand(720, 1280)
while True:
    t = time.time()
    while time.time() - t < 0.3:
        (a * 1.1 + 0.5).sum()
    time.sleep(0.7)
"""


def per_frame(estimator: DepthEstimator, frame, calls: int, threads: int, frames: int) -> float:
    """Seconds per frame with `calls` concurrent predict calls of `threads` torch threads each."""
    torch.set_num_threads(threads)
    each = max(1, frames // calls)

    def work() -> None:
        torch.set_num_threads(threads)
        for _ in range(each):
            estimator.predict([frame])

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(calls)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - started) / (each * calls)


def with_competitor(nice: int, measure) -> float:
    proc = subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", COMPETITOR])
    try:
        time.sleep(1.0)
        return measure()
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "fixtures" / "videos" / "tokyo_walk.mp4")
    parser.add_argument("--frames", type=int, default=4, help="frames per measurement")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    folder = materialize(ModelRef("random:depth-anything-v2-small", "random", "depth-anything-v2-small", "seed0"),
                         RANDOM_BUILDERS)  # fmt: skip
    frame = video.open_video(str(args.clip))[0].asnumpy()
    estimator = DepthEstimator(folder)
    estimator.predict([frame])  # warm-up
    print(f"Depth Anything V2 ViT-S on one {frame.shape[1]}x{frame.shape[0]} frame, {cores} cores, s/frame:")
    one = per_frame(estimator, frame, 1, cores, args.frames)
    print(f"  1 call x {cores} threads                    {one:6.2f}")
    split = per_frame(estimator, frame, cores, 1, args.frames)
    print(f"  {cores} calls x 1 thread (one process)        {split:6.2f}   ({one / split - 1:+.0%} frames/s)")
    for nice in (0, 10):
        busy = with_competitor(nice, lambda: per_frame(estimator, frame, cores, 1, args.frames))
        change = f"{split / busy - 1:+.0%} frames/s"
        print(f"  {cores} calls x 1 thread, 30% task at nice {nice:<2}  {busy:6.2f}   ({change})")


if __name__ == "__main__":
    main()
