"""`enrich compact OUTPUT`: keep the manifest's file count bounded, and its storage too.

- The clips table gains a file per commit, and a commit does not rewrite the files that held its
  clips' older rows (`enrich.manifest.publish`). Compaction rewrites the files that hold a
  superseded row, without it, and merges the small files (under a quarter of `CLIPS_FILE_ROWS`
  rows) into files of up to `CLIPS_FILE_ROWS` rows, sorted by clip_id, in one commit. It writes
  them with enrich's own writer, so the table keeps plain types (delta-rs' own optimize writes
  string_view, which pyarrow's dataset filters cannot compare).
- Frames and the stage tables have a file per clip, which a re-enriched clip replaces; they are not
  merged (merging would make every replacement rewrite a whole merged file: copy-on-write). Their
  small columns are compacted into `frames_meta` instead (`enrich.manifest.index`).
- Vacuum: each table's files that its log removed more than `retention_hours` ago, and files that
  no version ever named (a killed run's unpublished clips) older than that, are deleted, except
  those of tagged versions (`enrich tag`). Other snapshots older than the retention can then no
  longer be read.

A run compacts the clips table itself when it ends: the files with superseded rows, and the small
files once there are more than `AUTO_FILES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich import storage
from enrich.manifest import delta, index, layout
from enrich.manifest.schema import CLIPS

# Clips files of at most this many rows: the end of a run that re-enriched clips rewrites each file
# that held one of them, so the size bounds that rewrite, and files below a quarter of it are
# merged, which bounds how many files a plan or query opens.
CLIPS_FILE_ROWS = 2_000
AUTO_FILES = 64  # small clips files that make a run compact the clips table when it ends
RETENTION_HOURS = 7 * 24
TABLES = ("frames", "captions", "clips", index.NAME)


@dataclass
class Compacted:
    merged: int = 0  # clips files rewritten or merged ...
    into: int = 0  # ... into this many
    indexed: int = 0  # frames files added to frames_meta
    rewritten: int = 0  # frames_meta files rewritten without rows of replaced files
    vacuumed: dict | None = None  # table -> files deleted

    def line(self, output: str) -> str:
        gone = ", ".join(f"{n} {t}" for t, n in (self.vacuumed or {}).items() if n) or "none"
        return (
            f"{output}: clips table: {self.merged} files rewritten into {self.into}; frames_meta: {self.indexed} "
            f"frames files added, {self.rewritten} of its files rewritten; files vacuumed: {gone}"
        )


def compact_clips(output: str, run_id: str, at_least: int = 2, superseded: bool = True) -> tuple[int, int]:
    """Rewrite the clips table's files that hold a superseded row (a re-enriched clip's older one)
    without it, and merge its small files when there are `at_least` of them (a run passes more than
    AUTO_FILES), in one commit; returns (files rewritten, files written). So a run ends with one row
    per clip. `superseded` False: small files only, found in the log (no file is read unless some
    are merged; a run that published nothing)."""
    import numpy as np
    import pyarrow.parquet as pq
    from deltalake import CommitProperties
    from deltalake.transaction import RemoveAction

    from enrich.manifest.commit import current

    table = delta.open_table(output, "clips")
    if table is None or not table.version():
        return 0, 0
    records = pa.table(table.get_add_actions(flatten=True)).select(["path", "num_records"]).to_pylist()
    small = {a["path"] for a in records if (a["num_records"] or 0) < CLIPS_FILE_ROWS // 4}
    merged = small if len(small) >= max(2, at_least) else set()
    if not (superseded or merged):
        return 0, 0
    keys = delta.columns_by_file(output, "clips", table, CLIPS, ["clip_id", "clips_version"])
    if not keys:
        return 0, 0
    paths, sizes = list(keys), [t.num_rows for t in keys.values()]
    rows = pa.concat_tables(keys.values())
    rows = rows.append_column("row", pa.array(np.arange(rows.num_rows)))
    live = np.zeros(rows.num_rows, bool)
    live[current(rows)["row"].to_numpy()] = True
    spans = list(zip(paths, np.cumsum(sizes) - sizes, np.cumsum(sizes), strict=True))  # each file's rows
    older = {p for p, a, b in spans if not live[a:b].all()}
    chosen = [(p, a, b) for p, a, b in spans if p in older | merged]
    if not older and len(merged) < 2:
        return 0, 0
    folder = layout.table_dir(output, "clips")
    kept = pa.concat_tables(
        pq.read_table(storage.open_input(storage.join(folder, p)), schema=CLIPS).filter(pa.array(live[a:b]))
        for p, a, b in chosen
    ).sort_by("clip_id")
    now, change = delta.now_ms(), bool(older)  # dataChange false: the same rows, rearranged
    adds = [
        delta.write_file(
            output, "clips", kept.slice(start, CLIPS_FILE_ROWS), layout.clips_path(run_id, 0, n), now, change
        )
        for n, start in enumerate(range(0, kept.num_rows, CLIPS_FILE_ROWS))
    ]
    removes = [RemoveAction(p, change, now, None, {}) for p, _, _ in chosen]
    info = delta.snapshot(output)[1]  # the other tables' versions, which this commit keeps naming
    properties = CommitProperties(custom_metadata=delta.commit_metadata(info.others, run_id))
    table.create_write_transaction(adds + removes, mode="append", schema=table.schema(), commit_properties=properties)
    return len(chosen), len(adds)


def vacuum(output: str, retention_hours: int = RETENTION_HOURS) -> dict[str, int]:
    """Delete the files that no version within the retention, and no tag, needs; table -> files deleted."""
    out, tagged = {}, delta.tagged_versions(output)
    for name in TABLES:
        table = delta.open_table(output, name)
        if table is not None:
            # full: also files no version named; enforce_retention_duration False: the caller's retention
            options = dict(dry_run=False, enforce_retention_duration=False, full=True)
            gone = table.vacuum(retention_hours=retention_hours, keep_versions=tagged.get(name) or None, **options)
            out[name] = len(gone)
    return out


def run(output: str, retention_hours: int = RETENTION_HOURS) -> Compacted:
    """`enrich compact`: under OUTPUT's lock."""
    from enrich.lock import Lock
    from enrich.manifest.commit import require_manifest
    from enrich.pipeline.records import new_run_id

    require_manifest(output)
    lock = Lock(output).acquire()
    try:
        run_id = new_run_id()
        merged, into = compact_clips(output, run_id)
        indexed, rewritten = index.update(output, run_id)
        return Compacted(merged, into, indexed, rewritten, vacuum(output, retention_hours))
    finally:
        lock.release()
