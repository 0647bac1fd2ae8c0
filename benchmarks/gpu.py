"""The GPU benchmark: model only, enrich's stages chained in-process, and the naive loop, on one GPU.

    python benchmarks/gpu.py                      # the full set, on the GPU (under 8 minutes on an H100)
    python benchmarks/gpu.py --quick --device cpu # a smoke run of every code path, on CPU

Needs torch, torchvision, transformers and numpy only (no Ray, decord or PyAV): frames are real-
looking generated scenes at 720p (`tests/scenes.py`, textured), or the images in `--frames DIR`.
Models are the real architectures with random weights, which cost what real weights cost.

For each case it prints frames/s (pairs/s for flow) of:
- model only: the forward pass on inputs already on the device, in batches;
- enrich: what a model actor does per batch, from host uint8 frames to 16-bit codes back on the
  host (depth: `DepthEstimator.predict_codes`, the processor, the model, the resize back and the
  quantisation on the device), with the lossless PNG encoding of the previous batch overlapped on
  `--encoders` CPU threads, as Ray's CPU tasks overlap it with the model;
- naive (depth only): transformers' `pipeline("depth-estimation")`, one frame at a time, then
  a PIL 16-bit PNG;
and the model's achieved TFLOP/s, measured by torch's FLOP counter on one forward pass, as MFU
(model FLOP utilisation) of the GPU's dense peak for that precision (`--peak-tflops` overrides the
table), and enrich / model-only. Every figure is a median of `--repeats` timed runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.ops.common import precision_name  # noqa: E402
from enrich.ops.flowpng import encode_flow_png  # noqa: E402
from enrich.ops.quantize import encode_png16  # noqa: E402
from enrich.stages.depth.model import DepthEstimator, build_random  # noqa: E402
from enrich.stages.flow.model import FlowEstimator  # noqa: E402
from enrich.stages.flow.model import build_random as build_raft  # noqa: E402
from enrich.stages.pose.model import PoseEstimator, build_random_rtdetr, build_random_vitpose  # noqa: E402
from tests.scenes import scene  # noqa: E402

# Dense peak TFLOP/s (no sparsity) by GPU and precision, from NVIDIA's data sheets (SXM parts).
PEAKS = {
    "H100": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
DEPTH_ARCHS = {"S": "depth-anything-v2-small", "B": "depth-anything-v2-base", "L": "depth-anything-v2-large"}


def make_frames(count: int, width: int, height: int, folder: str | None) -> list[np.ndarray]:
    """Real images from `folder`, or generated scenes: a ray-cast depth layout shaded and textured."""
    if folder:
        from PIL import Image

        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return [np.asarray(Image.open(p).convert("RGB").resize((width, height))) for p in paths[:count]]
    rng = np.random.default_rng(0)
    out = []
    for seed in range(count):
        depth, _ = scene(height, width, seed)
        shade = 1.0 / (1.0 + depth / 10.0)
        texture = rng.uniform(0.7, 1.0, (height, width, 1)) * np.array([0.9, 0.8, 0.7]) * rng.uniform(0.5, 1.0, 3)
        out.append(np.clip(shade[..., None] * texture * 255, 0, 255).astype(np.uint8))
    return out


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs, after one untimed run (allocation, autotuning)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return float(counter.get_total_flops())


def peak(args, precision: str) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    key = "tf32" if precision in ("fp32", "auto") and torch.get_float32_matmul_precision() != "highest" else precision
    return next((table.get(key) for gpu, table in PEAKS.items() if gpu in name), None)


def report(name: str, n: int, model_s: float, enrich_s: float, work: float, top: float | None, naive_s=None) -> None:
    tflops = work / model_s / 1e12
    mfu = f"{tflops / top:6.1%}" if top else "   n/a"
    naive = f"{n / naive_s:8.2f}" if naive_s else "       -"
    print(f"{name:<28} {n / model_s:8.2f} {n / enrich_s:8.2f} {naive} {tflops:8.2f} {mfu} {model_s / enrich_s:8.2f}")


def depth_case(args, arch: str, precision: str, compiled: bool, frames: list[np.ndarray], pool, root: str) -> None:
    folder = str(Path(root) / DEPTH_ARCHS[arch])
    if not Path(folder, "config.json").exists():
        build_random(DEPTH_ARCHS[arch], folder)
    estimator = DepthEstimator(folder, device=args.device, precision=precision, compile=compiled)
    batches = [frames[i : i + args.batch] for i in range(0, len(frames), args.batch)]
    pixels = [estimator.processor(images=torch.from_numpy(np.stack(b)).permute(0, 3, 1, 2), return_tensors="pt",
                                  device=args.device)["pixel_values"].to(estimator.dtype) for b in batches]  # fmt: skip

    def model_only():
        with torch.inference_mode():
            for p in pixels:
                estimator.forward(pixel_values=p)

    def enrich():
        pending = []
        for batch in batches:
            codes = estimator.predict_codes(batch)
            pending += [pool.submit(encode_png16, c) for c, _, _ in codes]  # encoded while the GPU goes on
        for f in pending:
            f.result()

    work = flops(lambda: estimator.model(pixel_values=pixels[0])) * len(frames) / len(batches[0])
    model_s, enrich_s = timed(model_only, args.repeats), timed(enrich, args.repeats)
    naive_s = None
    if args.naive and not compiled:
        naive_s = naive_depth(folder, frames, args)
    dtype = precision_name(estimator.dtype)
    label = f"depth ViT-{arch} {dtype}" + (" compiled" if compiled else "")
    report(label, len(frames), model_s, enrich_s, work, peak(args, dtype), naive_s)


def naive_depth(folder: str, frames: list[np.ndarray], args) -> float:
    import io

    from PIL import Image
    from transformers import pipeline

    pipe = pipeline("depth-estimation", model=folder, device=0 if args.device.startswith("cuda") else -1)

    def loop():
        for frame in frames:
            depth = pipe(Image.fromarray(frame))["predicted_depth"].numpy()
            lo, hi = float(depth.min()), float(depth.max())
            codes = ((depth - lo) / max(hi - lo, 1e-12) * 65535).round().astype(np.uint16)
            Image.fromarray(codes).save(io.BytesIO(), format="PNG")

    return timed(loop, args.repeats)


def flow_case(args, precision: str, compiled: bool, frames: list[np.ndarray], pool, root: str) -> None:
    path = str(Path(root) / "raft_large.pt")
    if not Path(path).exists():
        build_raft("raft_large", path)
    estimator = FlowEstimator("raft_large", path, device=args.device, precision=precision, compile=compiled)
    pairs = list(zip(frames[:-1], frames[1:], strict=True))[: args.pairs]
    batches = [pairs[i : i + args.flow_batch] for i in range(0, len(pairs), args.flow_batch)]

    def on_device(batch):
        stacks = (np.stack(side) for side in zip(*batch, strict=True))
        first, second = (torch.from_numpy(x).to(args.device).permute(0, 3, 1, 2) for x in stacks)
        return estimator.transforms(first, second)

    ready = [on_device(b) for b in batches]

    def model_only():
        with torch.inference_mode(), torch.autocast(args.device.split(":")[0], torch.bfloat16,
                                                    enabled=estimator.autocast):  # fmt: skip
            for first, second in ready:
                estimator.forward(first, second, num_flow_updates=estimator.num_updates)

    def enrich():
        pending = []
        for batch in batches:
            pending += [pool.submit(encode_flow_png, f) for f in estimator.predict(batch)]
        for f in pending:
            f.result()

    with torch.autocast(args.device.split(":")[0], torch.bfloat16, enabled=estimator.autocast):
        work = flops(lambda: estimator.model(*ready[0], num_flow_updates=estimator.num_updates)) * len(batches)
    model_s, enrich_s = timed(model_only, args.repeats), timed(enrich, args.repeats)
    report(f"flow RAFT-L {precision}" + (" compiled" if compiled else ""), len(pairs), model_s, enrich_s, work,
           peak(args, "bf16" if precision == "bf16" else "fp32"))  # fmt: skip


def pose_case(args, precision: str, compiled: bool, frames: list[np.ndarray], root: str) -> None:
    pose, detector = str(Path(root) / "vitpose-base"), str(Path(root) / "rtdetr-r50")
    if not Path(pose, "config.json").exists():
        build_random_vitpose(pose, "base")
        build_random_rtdetr(detector, "r50")
    estimator = PoseEstimator(pose, detector, device=args.device, precision=precision, compile=compiled)
    batches = [frames[i : i + args.batch] for i in range(0, len(frames), args.batch)]
    process = estimator.detector_processor
    pixels = [process(images=b, return_tensors="pt")["pixel_values"].to(args.device, torch.float32) for b in batches]

    def model_only():  # the detector's forward pass (always fp32): the part that scales with frames
        with torch.inference_mode():
            for p in pixels:
                estimator.detector(pixel_values=p)

    def enrich():
        for batch in batches:
            estimator.predict(batch)

    work = flops(lambda: estimator.detector(pixel_values=pixels[0])) * len(batches)
    model_s, enrich_s = timed(model_only, args.repeats), timed(enrich, args.repeats)
    label = f"pose RT-DETR+ViTPose-B {precision}" + (" compiled" if compiled else "")
    report(label, len(frames), model_s, enrich_s, work, peak(args, "fp32"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", help="a folder of images to use instead of generated scenes")
    parser.add_argument("--size", default="1280x720", help="frame size, WxH (multiples of 8 for RAFT)")
    parser.add_argument("--count", type=int, default=64, help="frames per measurement")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=32, help="flow pairs per measurement")
    parser.add_argument("--flow-batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoders", type=int, default=16, help="CPU threads encoding PNGs beside the GPU")
    parser.add_argument("--archs", default="S,B,L")
    parser.add_argument("--compile", default="S,L", help="ViT sizes also measured under torch.compile")
    parser.add_argument("--compile-precision", default="bf16", help="precisions of the compiled cases: fp32,bf16")
    parser.add_argument(
        "--compile-flow-pose", action="store_true", help="also RAFT and ViTPose compiled (minutes of compiling)"
    )
    parser.add_argument("--cases", default="depth,flow,pose", help="which models to measure")
    parser.add_argument("--no-naive", dest="naive", action="store_false")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense peak, if not in the table")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks every path, measures nothing")
    args = parser.parse_args()
    if args.quick:
        args.count, args.batch, args.pairs, args.flow_batch, args.repeats = 2, 2, 1, 1, 1
        args.archs, args.compile, args.size = "S", "", "320x192"
    cases = set(args.cases.split(","))
    compile_precisions = args.compile_precision.split(",")
    started = time.perf_counter()
    width, height = map(int, args.size.split("x"))
    frames = make_frames(args.count + 1, width, height, args.frames)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{name}; torch {torch.__version__}; {len(frames) - 1} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"batch {args.batch}; median of {args.repeats}")  # fmt: skip
    print(f"{'case':<28} {'model/s':>8} {'enrich/s':>8} {'naive/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'en/model':>8}")
    with tempfile.TemporaryDirectory() as root, concurrent.futures.ThreadPoolExecutor(args.encoders) as pool:
        for arch in args.archs.split(",") if "depth" in cases else ():
            for precision in ("fp32", "bf16"):
                depth_case(args, arch, precision, False, frames[:-1], pool, root)
        for arch in filter(None, args.compile.split(",")) if "depth" in cases else ():
            for precision in compile_precisions:
                depth_case(args, arch, precision, True, frames[:-1], pool, root)
        compiled = [(p, True) for p in compile_precisions if args.compile_flow_pose]
        for precision, on in [("fp32", False), ("bf16", False), *compiled]:
            if "flow" in cases:
                flow_case(args, precision, on, frames, pool, root)
            if "pose" in cases:
                pose_case(args, precision, on, frames[:-1], root)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
