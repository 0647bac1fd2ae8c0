"""delta-rs' own cost of a commit, against the table's file count and its files' statistics.

What grows with the catalogue in enrich's commit (`manifest_scale.py`) is delta-rs' work per
commit: it holds the state of every live file, and a commit and the refresh after it both go
over it. This script isolates it: a table of N files (one Add each, as enrich's frames table has
a file per clip; the files need not exist, nothing reads them), then commits of 100 Removes and
100 Adds, as a re-enriched batch of 100 clips makes, timed (medians of --repeats) with the stats
enrich writes (clip_id), with one more column (clip_id, frame_index), and with none:

  commit   `DeltaTable.create_write_transaction`
  refresh  `DeltaTable.update_incremental`, which the next commit needs
  and what each file more in the table adds to both, from the size before

and, on the line "enrich (clip_id)", the same commits written as enrich writes them
(`enrich.manifest.delta.commit`: the commit file alone; nothing to refresh), then read back by
delta-rs to check that the table holds the files it should.

    python benchmarks/delta_commit.py --files 1000,10000,100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

import pyarrow as pa

from enrich.manifest import delta

STATS = {"clip_id": ("clip_id",), "clip_id+frame_index": ("clip_id", "frame_index"), "none": ()}


def add(i: int, tag: str, columns: tuple[str, ...]):
    from deltalake.transaction import AddAction

    values = {"clip_id": f"catalogue/clip_{i:07d}.mp4", "frame_index": 0}
    stats = {"numRecords": 5}
    if columns:
        stats.update(minValues={c: values[c] for c in columns}, maxValues={c: values[c] for c in columns},
                     nullCount=dict.fromkeys(columns, 0))  # fmt: skip
    path = f"{i % 100:02d}/{i:07d}.{tag}.parquet"
    return AddAction(path, 30_000, {}, int(time.time() * 1000), True, json.dumps(stats))


def measure(root: str, files: int, columns: tuple[str, ...], repeats: int, own: bool = False) -> tuple[float, float]:
    from deltalake import DeltaTable
    from deltalake.transaction import PostCommitHookProperties, RemoveAction

    uri = f"{root}/table-{files}"
    shutil.rmtree(uri, ignore_errors=True)
    schema = pa.schema([("clip_id", pa.string()), ("frame_index", pa.int64())])
    table = DeltaTable.create(uri, schema)
    for start in range(0, files, 100_000):
        adds = [add(i, "a", columns) for i in range(start, min(files, start + 100_000))]
        table.create_write_transaction(adds, mode="append", schema=table.schema())
    table = DeltaTable(uri)
    no_checkpoint = PostCommitHookProperties(create_checkpoint=False)  # one in 100 commits; timed apart
    commits, refreshes = [], []
    for r in range(repeats):
        now, batch = int(time.time() * 1000), range(r * 100, r * 100 + 100)
        actions = [RemoveAction(add(i, "a", ()).path, True, now, None, {}) for i in batch]
        actions += [add(i, f"r{r}", columns) for i in batch]
        started = time.perf_counter()
        if own:
            delta.commit(root, f"table-{files}", table.version() + r, actions)
        else:
            table.create_write_transaction(
                actions, mode="append", schema=table.schema(), post_commithook_properties=no_checkpoint
            )
        committed = time.perf_counter()
        if not own:
            table.update_incremental()
        commits.append(committed - started)
        refreshes.append(time.perf_counter() - committed)
    if own:  # what a reader sees: the first `repeats` hundred files replaced, the rest as they were
        paths = set(pa.table(DeltaTable(uri).get_add_actions(flatten=True))["path"].to_pylist())
        expected = {add(i, f"r{i // 100}" if i < 100 * repeats else "a", ()).path for i in range(files)}
        assert paths == expected, "the table read back is not the one committed"
    shutil.rmtree(uri, ignore_errors=True)
    return statistics.median(commits), statistics.median(refreshes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="1000,10000,100000")
    parser.add_argument("--root", default="/tmp/delta-commit")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("   files  stats                 commit s  refresh s  µs per file more (both, from the size before)")
    before: dict[str, tuple[int, float]] = {}
    for files in map(int, args.files.split(",")):
        for name, columns in STATS.items():
            commit, refresh = measure(args.root, files, columns, args.repeats)
            slope = ""
            if name in before:
                slope = f"{(commit + refresh - before[name][1]) / (files - before[name][0]) * 1e6:>17.2f}"
            before[name] = (files, commit + refresh)
            print(f"{files:>8}  {name:<20} {commit:>9.3f} {refresh:>10.3f} {slope}", flush=True)
        commit, refresh = measure(args.root, files, STATS["clip_id"], args.repeats, own=True)
        print(f"{files:>8}  {'enrich (clip_id)':<20} {commit:>9.3f} {refresh:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
