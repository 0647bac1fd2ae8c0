"""The manifest at catalogue scale: costs of a manifest of 1k, 10k and 100k clips.

Builds each manifest through enrich's own writer (`enrich.manifest.publish.Publisher`, per-clip
frames files with the manifest's schema, commits of 1,000 clips), from synthetic rows: no models,
since building 100k clips with `enrich run` on 2 cores would take days. Each clip has --frames
frames with a --depth-kib random "depth PNG" and a 2 KiB thumbnail. Then, for each size, it times
(the median of --repeats):

  index   bringing `frames_meta` up to date after the build (what `enrich compact` does, and a run
          that has published 1,000 clips or more; once, not repeated)
  query   a metadata query through `enrich.query.query`: frames with a flag set, counted per clip
  fetch   the depth PNGs of 1,000 chosen frames (200 clips, 5 frames each), found through the log
  open    what a run reads of the logs before its first commit (`Publisher.open`)
  commit  publishing a batch of 100 re-enriched clips (their files written first, not timed):
          the frames commit and the clips commit (`Publisher.publish`); "of it clips" is the
          clips commit (the batch's rows, as a new file)
  end     what a run's end then does to the clips table: rewrite the files that held the older
          rows of the re-enriched clips (`compact.compact_clips`; once a run, after all its commits)
  chkpt   a checkpoint of the frames table, which every 100th commit also writes (delta-rs')
  plan    a no-op plan: the clips table read and `make_plan` over every clip (all up to date)

    python benchmarks/manifest_scale.py --sizes 1000,10000,100000 --root /tmp/manifest-scale
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from enrich import storage
from enrich.catalog import Clip
from enrich.manifest import compact, delta, index, layout
from enrich.manifest.commit import COMPRESSION, file_stats, read_clips
from enrich.manifest.publish import Finished, Publisher
from enrich.manifest.schema import FLAG_NAMES, FRAMES
from enrich.pipeline.records import new_run_id
from enrich.plan import make_plan
from enrich.query import query

BATCH = 1000  # clips per commit while building
HASHES = {"frames": "f" * 16}


def clip_id(i: int) -> str:
    return f"catalogue/{i // 1000:04d}/clip_{i:07d}.mp4"


def clip_row(i: int, run_id: str) -> dict:
    cid = clip_id(i)
    return {"clip_id": cid, "clip_uri": f"s3://videos/{cid}", "size_bytes": 1000 + i, "etag": f"e{i}",
            "status": "ok", "attempts": 1, "n_frames": 0, "run_id": run_id, "config_hash": "c",
            "hashes": HASHES, "fps": 30.0, "width": 1920, "height": 1080}  # fmt: skip


def write_frames(output: str, cid: str, run_id: str, n: int, depth: bytes, thumb: bytes, rng) -> dict:
    flags = [{name: bool(rng.random() < 0.1) for name in FLAG_NAMES} for _ in range(n)]
    columns = {name: pa.nulls(n, FRAMES.field(name).type) for name in FRAMES.names}
    columns.update(
        clip_id=pa.array([cid] * n), clip_uri=pa.array([f"s3://videos/{cid}"] * n),
        frame_index=pa.array(range(0, 30 * n, 30), pa.int64()), timestamp_s=pa.array([t / 1.0 for t in range(n)]),
        width=pa.array([1920] * n, pa.int32()), height=pa.array([1080] * n, pa.int32()),
        depth_png=pa.array([depth] * n, pa.binary()), thumb_jpeg=pa.array([thumb] * n, pa.binary()),
        flags=pa.array(flags, FRAMES.field("flags").type), run_id=pa.array([run_id] * n),
    )  # fmt: skip
    table = pa.table([columns[name] for name in FRAMES.names], schema=FRAMES)
    path = layout.clip_path(cid, run_id)
    target = storage.join(layout.table_dir(output, "frames"), path)
    with storage.atomic_output(target) as out:
        pq.write_table(table, out, compression=COMPRESSION, row_group_size=32)
        size = out.tell()
    return {"path": path, "size": size, "stats": file_stats(cid, n)}


def build(output: str, size: int, args) -> float:
    rng = np.random.default_rng(size)
    depth, thumb = os.urandom(args.depth_kib * 1024), os.urandom(2048)
    publisher = Publisher(output, "build")
    started = time.perf_counter()
    for start in range(0, size, BATCH):
        batch = []
        for i in range(start, min(size, start + BATCH)):
            files = {"frames": write_frames(output, clip_id(i), "build", args.frames, depth, thumb, rng)}
            batch.append(Finished({**clip_row(i, "build"), "n_frames": args.frames}, files))
        publisher.publish(batch)
    return time.perf_counter() - started


class TimedPublisher(Publisher):
    """A Publisher that keeps the time of its last clips commit (the rest of a publish is the frames commit)."""

    clips_s = 0.0

    def publish_rows(self, rows):
        started = time.perf_counter()
        versions = super().publish_rows(rows)
        self.clips_s = time.perf_counter() - started
        return versions


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(output: str, size: int, args) -> dict:
    rng = np.random.default_rng(1)
    sql = "SELECT clip_id, count(*) AS flagged FROM frames WHERE flags.motion_blur GROUP BY clip_id"
    q, rows = timed(lambda: query(output, sql), args.repeats)
    chosen = [clip_id(int(i)) for i in rng.choice(size, 200, replace=False)]

    def fetch() -> int:
        files = delta.clip_files(output, "frames", chosen)
        got = 0
        for uri in files.values():
            f = pq.ParquetFile(storage.open_input(uri))
            got += sum(len(v) for v in f.read(columns=["depth_png"])["depth_png"].to_pylist()[:5])
        return got

    f, fetched = timed(fetch, args.repeats)
    commits, clips_commits, opens, rng_c = [], [], [], np.random.default_rng(2)
    depth, thumb = os.urandom(args.depth_kib * 1024), os.urandom(2048)
    for _ in range(args.repeats):
        run_id = new_run_id()
        redo = [int(i) for i in rng_c.choice(size, 100, replace=False)]
        batch = [Finished({**clip_row(i, run_id), "n_frames": args.frames},
                          {"frames": write_frames(output, clip_id(i), run_id, args.frames, depth, thumb, rng_c)})
                 for i in redo]  # fmt: skip
        started = time.perf_counter()
        publisher = TimedPublisher(output, run_id)
        publisher.open()
        opens.append(time.perf_counter() - started)
        started = time.perf_counter()
        publisher.publish(batch)
        commits.append(time.perf_counter() - started)
        clips_commits.append(publisher.clips_s)
    started = time.perf_counter()
    compact.compact_clips(output, new_run_id(), at_least=compact.AUTO_FILES + 1)
    end = time.perf_counter() - started
    table = delta.open_table(output, "frames")
    checkpoint, _ = timed(table.create_checkpoint, 1)
    clips = [Clip(clip_id(i), f"s3://videos/{clip_id(i)}", 1000 + i, f"e{i}") for i in range(size)]

    def plan():
        return make_plan(clips, read_clips(output), HASHES)

    p, made = timed(plan, args.repeats)
    assert not made.todo and made.skipped == size, made.describe()
    assert rows.num_rows > 0 and fetched == 1000 * args.depth_kib * 1024
    return {"query": q, "fetch": f, "open": statistics.median(opens), "commit": statistics.median(commits),
            "clips": statistics.median(clips_commits), "end": end, "checkpoint": checkpoint, "plan": p}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--root", default="/tmp/manifest-scale", help="where the manifests are built (local or s3://)")
    parser.add_argument("--frames", type=int, default=5, help="frames per clip")
    parser.add_argument("--depth-kib", type=int, default=4, help="size of each frame's depth PNG")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="reuse manifests built by an earlier run")
    args = parser.parse_args()
    print(
        "   clips  build s  index s  query s  fetch 1k s  open s  commit 100 s  of it clips s  end s  chkpt s  plan s"
    )
    for size in map(int, args.sizes.split(",")):
        output = storage.join(args.root, f"clips-{size}")
        built = 0.0
        if not (args.keep and delta.is_table(output, "clips")):
            storage.delete_prefix(output)
            built = build(output, size, args)
        started = time.perf_counter()
        index.update(output, "index")
        indexed = time.perf_counter() - started
        m = measure(output, size, args)
        figures = f"{m['query']:>8.2f} {m['fetch']:>11.2f} {m['open']:>7.2f} {m['commit']:>13.2f} {m['clips']:>14.2f}"
        figures += f" {m['end']:>6.2f} {m['checkpoint']:>8.2f} {m['plan']:>7.2f}"
        print(f"{size:>8} {built:>8.1f} {indexed:>8.1f} {figures}", flush=True)


if __name__ == "__main__":
    main()
