"""`enrich compact OUTPUT`: keep the manifest's file count bounded, and its storage too.

- The clips table gains a file per commit (and a smaller one for each file a commit took clips
  from). Compaction merges its small files (under a quarter of `CLIPS_FILE_ROWS` rows) into files
  of up to `CLIPS_FILE_ROWS` rows, sorted by clip_id, in one commit. It writes them with enrich's
  own writer, so the table keeps plain types (delta-rs' own optimize writes string_view, which
  pyarrow's dataset filters cannot compare).
- Frames and the stage tables have a file per clip, which a re-enriched clip replaces; they are not
  merged (merging would make every replacement rewrite a whole merged file: copy-on-write). Their
  small columns are compacted into `frames_meta` instead (`enrich.manifest.index`).
- Vacuum: each table's files that its log removed more than `retention_hours` ago, and files that
  no version ever named (a killed run's unpublished clips) older than that, are deleted, except
  those of tagged versions (`enrich tag`). Other snapshots older than the retention can then no
  longer be read.

A run compacts the clips table itself when it ends with more than `AUTO_FILES` small files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich import storage
from enrich.manifest import delta, index, layout
from enrich.manifest.schema import CLIPS

# Clips files of at most this many rows: a commit rewrites each file that holds one of its clips, so
# the size bounds that rewrite (a batch of 100 random clips: 100 files at most), and files below a
# quarter of it are merged, which bounds how many files a plan or query opens.
CLIPS_FILE_ROWS = 2_000
AUTO_FILES = 64  # small clips files that make a run compact the clips table when it ends
RETENTION_HOURS = 7 * 24
TABLES = ("frames", "captions", "clips", index.NAME)


@dataclass
class Compacted:
    merged: int = 0  # clips files merged ...
    into: int = 0  # ... into this many
    indexed: int = 0  # frames files added to frames_meta
    rewritten: int = 0  # frames_meta files rewritten without rows of replaced files
    vacuumed: dict | None = None  # table -> files deleted

    def line(self, output: str) -> str:
        gone = ", ".join(f"{n} {t}" for t, n in (self.vacuumed or {}).items() if n) or "none"
        return (
            f"{output}: clips table: {self.merged} files merged into {self.into}; frames_meta: {self.indexed} "
            f"frames files added, {self.rewritten} of its files rewritten; files vacuumed: {gone}"
        )


def small_files(table) -> list[dict]:
    actions = pa.table(table.get_add_actions(flatten=True)).select(["path", "num_records"]).to_pylist()
    return [a for a in actions if (a["num_records"] or 0) < CLIPS_FILE_ROWS // 4]


def compact_clips(output: str, run_id: str, at_least: int = 2) -> tuple[int, int]:
    """Merge the clips table's small files when there are `at_least` of them (a run passes more than
    AUTO_FILES); returns (files merged, files written)."""
    import pyarrow.parquet as pq
    from deltalake import CommitProperties
    from deltalake.transaction import RemoveAction

    table = delta.open_table(output, "clips")
    small = small_files(table) if table is not None else []
    if len(small) < max(2, at_least):
        return 0, 0
    folder = layout.table_dir(output, "clips")
    rows = pa.concat_tables(
        pq.read_table(storage.open_input(storage.join(folder, a["path"])), schema=CLIPS) for a in small
    ).sort_by("clip_id")
    now = delta.now_ms()
    adds = [  # data_change False: the same rows, rearranged
        delta.write_file(
            output, "clips", rows.slice(start, CLIPS_FILE_ROWS), layout.clips_path(run_id, 0, n), now, False
        )
        for n, start in enumerate(range(0, rows.num_rows, CLIPS_FILE_ROWS))
    ]
    removes = [RemoveAction(a["path"], False, now, None, {}) for a in small]
    info = delta.snapshot(output)[1]  # the other tables' versions, which this commit keeps naming
    properties = CommitProperties(custom_metadata=delta.commit_metadata(info.others, run_id))
    table.create_write_transaction(adds + removes, mode="append", schema=table.schema(), commit_properties=properties)
    return len(small), len(adds)


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
