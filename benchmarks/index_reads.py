"""How fast `frames_meta`'s update reads the frames files it lacks, against how many it reads at once.

An update (`enrich compact`, or the end of a run that published 1,000 clips or more) reads the small
columns of every frames file missing from the index: a footer and a few column chunks each, a few
requests on S3. This times that read (`enrich.manifest.index._rows`) over every frames file of a
manifest built by `manifest_scale.py`, with `index.READERS` files at a time, each setting in turn
per round, and prints the median of --repeats rounds and the ratio to one at a time:

    python benchmarks/manifest_scale.py --sizes 10000 --root /tmp/manifest-scale --keep
    python benchmarks/index_reads.py --output /tmp/manifest-scale/clips-10000
"""

from __future__ import annotations

import argparse
import statistics
import time

from enrich.manifest import delta, index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="a manifest (local or s3://)")
    parser.add_argument("--readers", default="1,4,16", help="files read at once, each setting timed")
    parser.add_argument("--files", type=int, default=0, help="read only the first N frames files (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, versions = delta.snapshot(args.output)
    paths = sorted(index.live_files(args.output, versions.others["frames"]))[: args.files or None]
    settings = [int(n) for n in args.readers.split(",")]
    times: dict[int, list[float]] = {n: [] for n in settings}
    for _ in range(args.repeats):
        for n in settings:
            index.READERS = n
            started = time.perf_counter()
            rows = index._rows(args.output, paths)
            times[n].append(time.perf_counter() - started)
            assert rows.num_rows > 0 and len(set(rows["source_file"].to_pylist())) == len(paths)
    base = statistics.median(times[settings[0]])
    print(f"{len(paths)} frames files of {args.output}, median of {args.repeats}")
    print("readers  seconds  files/s  vs first")
    for n in settings:
        s = statistics.median(times[n])
        print(f"{n:>7} {s:>8.2f} {len(paths) / s:>8.0f} {base / s:>9.1f}x")


if __name__ == "__main__":
    main()
