"""Lossless PNG encoding of depth and flow: deflate library and level against time and size.

    python benchmarks/png_encode.py [--size 1280x720] [--frames 8] [--rounds 5]

Encodes the depth (16-bit grey) and forward flow (16-bit RGB, KITTI) of real-looking scenes
(`tests/scenes.py`: a ray-cast ground plane, walls and objects, a walking, turning camera, one
moving object, a model's small noise) with enrich's encoders (`enrich.ops.png16`, Up filter), on
one core, with zlib at levels 1, 3 and 6 and isal at levels 0 to 3. Also random codes, the worst
case. Prints the median ms per map over the rounds, the mean bytes per map, and both relative to
what enrich did before isal (zlib level 1; for flow also the sample preparation it had then).
Every file is decoded again and checked exactly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enrich.ops import png16  # noqa: E402
from enrich.ops.flowpng import decode_flow_png, encode_flow_png  # noqa: E402
from enrich.ops.quantize import decode_png16, encode_png16, quantize  # noqa: E402
from tests.scenes import disparity, scene  # noqa: E402


def deflaters() -> dict[str, object]:
    found = {f"zlib {level}": (lambda data, level=level: zlib.compress(data, level)) for level in (1, 3, 6)}
    if png16.isal_zlib is None:
        print("isal is not installed (pip install isal): zlib only")
        return found
    for level in range(4):
        found[f"isal {level}"] = lambda data, level=level: png16.isal_zlib.compress(data, level)
    return found


def maps(width: int, height: int, frames: int) -> dict[str, list]:
    rng = np.random.default_rng(0)
    scenes = [scene(height, width, seed) for seed in range(frames)]
    return {
        "depth": [quantize(disparity(depth))[0] for depth, _ in scenes],
        "flow": [flow for _, flow in scenes],
        "depth, random codes": [rng.integers(1, 65536, (height, width), dtype=np.uint16) for _ in range(frames)],
    }


def flow_before(flow: np.ndarray, compress) -> bytes:
    """How enrich prepared a flow PNG's samples before they were computed in place (at 1de859e):
    float64 temporaries and np.where, then the same writer."""
    with np.errstate(invalid="ignore", over="ignore"):
        stored = np.rint(np.asarray(flow, dtype=np.float64) * 64 + 2**15)
        valid = np.all((stored >= 0) & (stored <= 65535), axis=2)
    samples = np.empty((*flow.shape[:2], 3), np.uint16)
    samples[..., :2] = np.where(valid[..., None], stored, 2**15)
    samples[..., 2] = valid
    return png16.encode_png16(samples, compress)


def measure(kind: str, items: list, compress, rounds: int, before: bool = False) -> tuple[float, float]:
    encode = (flow_before if before else encode_flow_png) if kind == "flow" else encode_png16
    files = [encode(item, compress) for item in items]
    for item, data in zip(items, files, strict=True):  # exact, or the figure means nothing
        if kind == "flow":
            assert np.array_equal(decode_flow_png(data)[0], decode_flow_png(encode(item, png16.zlib_deflate))[0], True)
        else:
            assert np.array_equal(decode_png16(data), item)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            encode(item, compress)
        times.append((time.perf_counter() - start) / len(items) * 1000)
    return statistics.median(times), float(np.mean([len(data) for data in files]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--frames", type=int, default=8, help="maps per kind (different scenes)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    candidates = deflaters()
    default = f"{png16.DEFLATE} (isal level {png16.ISAL_LEVEL}, zlib level {png16.ZLIB_LEVEL})"
    print(f"{width}x{height}, {args.frames} maps per kind, median of {args.rounds} rounds, one core; default {default}")
    for kind, items in maps(width, height, args.frames).items():
        print(f"\n{kind}:")
        print(f"  {'deflate':<8} {'ms/map':>8} {'x before':>9} {'KiB/map':>9} {'size x before':>14}")
        base = None
        rows = [(name, compress, False) for name, compress in candidates.items()]
        if kind == "flow":  # what enrich did before, all of it: the old sample preparation and zlib 1
            rows.insert(0, ("before", candidates["zlib 1"], True))
        for name, compress, before in rows:
            ms, size = measure(kind, items, compress, args.rounds, before)
            base = base or (ms, size)
            print(f"  {name:<8} {ms:8.1f} {ms / base[0]:9.2f} {size / 1024:9.0f} {size / base[1]:14.3f}")


if __name__ == "__main__":
    main()
