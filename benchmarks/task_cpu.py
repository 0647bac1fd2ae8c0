"""CPU seconds per sampled frame of every CPU task of a run: what sizes the cores a GPU node needs.

    python benchmarks/task_cpu.py [--clip PATH] [--fps 2] [--frames 8] [--stages depth,flow,pose]

Runs enrich's own stage classes in this process, in pipeline order, on the sampled frames of one
clip (default: the 720p fixture `tokyo_walk.mp4`): decode, then each model stage (smoke models,
untimed: on a GPU node they run on the GPU) with its encoder, then the summary, the audit and the
write of the staged parts. Each CPU stage is timed per call with the thread CPU clock, on one core,
so the figures are CPU seconds, and printed as ms per sampled frame. Decode is timed for the whole
clip, every frame up to the last sample, as the decode task runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.config import AuditConfig  # noqa: E402
from enrich.stages import model_stage  # noqa: E402
from enrich.stages.audit import Audit  # noqa: E402
from enrich.stages.decode import Decode  # noqa: E402
from enrich.stages.depth import DepthConfig  # noqa: E402
from enrich.stages.flow import FlowConfig  # noqa: E402
from enrich.stages.pose import PoseConfig  # noqa: E402
from enrich.stages.temporal import Summarize  # noqa: E402
from enrich.stages.write import WriteParts  # noqa: E402

SMOKE = {
    "depth": DepthConfig(model="random:depth-anything-v2-small", precision="fp32"),
    "flow": FlowConfig(model="random:raft_small", precision="fp32", updates=4),
    "pose": PoseConfig(model="random:vitpose-tiny", detector_model="random:rtdetr-tiny"),
}


def cpu_timed(times: dict[str, float], name: str, fn, *args):
    started = time.thread_time()
    result = fn(*args)
    times[name] += time.thread_time() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(ROOT.parent / "shared/fixtures/videos/tokyo_walk.mp4"))
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=8, help="sampled frames (the first N)")
    parser.add_argument("--stages", default="depth,flow,pose")
    parser.add_argument("--decoder", default="decord")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    stages = [name for name in ("flow", "depth", "pose") if name in args.stages.split(",")]
    times: dict[str, float] = defaultdict(float)
    decode = Decode(args.fps, args.frames, pairs="flow" in stages, decoder=args.decoder)
    batches = cpu_timed(times, "decode", lambda: list(decode.decode_clip("clip", args.clip)))
    frames = sum(len(b["frame_index"]) for b in batches)
    with tempfile.TemporaryDirectory() as staging:
        models = {}
        for name in stages:
            stage = model_stage(name)
            models[name] = (stage.actor(**stage.actor_kwargs(SMOKE[name], stage.resolve(SMOKE[name]))), stage.encoder)
        constants = {"run_id": "bench", "config_hash": "bench"}
        constants |= {f"{n}_model": "smoke" for n in ("depth", "flow", "pose")}
        tail = [Summarize(), Audit(AuditConfig()), WriteParts(staging, constants)]
        for batch in batches:
            for name, (actor, encoder) in models.items():
                batch = actor(batch)  # the model: on the GPU on a GPU node, not counted here
                if encoder is not None:
                    batch = cpu_timed(times, f"encode-{name}", encoder(), batch)
            for stage in tail:
                batch = cpu_timed(times, stage.name, stage, batch)
    height, width = batches[0]["frame"].shape[1:3]
    print(f"{Path(args.clip).name}: {frames} sampled frames of {width}x{height} at --fps {args.fps:g}, "
          f"stages {','.join(stages)}; CPU ms per sampled frame, one core")  # fmt: skip
    for name, seconds in times.items():
        print(f"  {name:<14} {1e3 * seconds / frames:8.1f}")
    print(f"  {'all':<14} {1e3 * sum(times.values()) / frames:8.1f}")


if __name__ == "__main__":
    main()
