"""`frames_meta`: the frames table's small columns, compacted, so that queries open few files.

The frames table keeps one file per clip (a re-enriched clip replaces only its own), which makes
a query over a large catalogue open a file per clip. `frames_meta` is a Delta table of the same
rows without the PNG and JPEG columns, and with `source_file`, the frames file each row was copied
from, in files of up to `FILE_ROWS` rows. It is derived, never the truth:

- A frames file is immutable (its name is new each run), so an index row is valid for a frames
  version exactly when its `source_file` is one of that version's files. Each update records the
  frames version it brought the index up to, and the index then holds every file of that version.
  A query of a snapshot takes the index rows of its files that version also holds, and reads its
  other files directly (`register_frames`): two file lists from logs, not a row of the index read.
  Whatever the index holds, the rows are the frames table's.
- `update` (run by `enrich compact`, and by a run that has published enough new clips) copies
  the small columns of the live files it lacks into new files, and rewrites an index file only
  when a quarter of its rows are of files no longer live. Re-enriching a few clips rewrites
  nothing; their old rows are skipped until then.

A query that names a PNG or JPEG column, or selects `*` from frames, reads the frames files.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich.manifest import delta, layout
from enrich.manifest.schema import FRAMES

NAME = "frames_meta"
BLOBS = tuple(f.name for f in FRAMES if pa.types.is_binary(f.type))  # depth_png, flow_png, thumb_jpeg
META = pa.schema([*(f for f in FRAMES if f.name not in BLOBS), ("source_file", pa.string())])
FILE_ROWS = 1_000_000  # an index file: ~100-300 MB of small columns at most
DEAD_SHARE = 0.25  # an index file is rewritten once more than this share of its rows are of replaced files
AUTO_NEW_FILES = 1000  # frames files not in the index that make a run update it when it ends
READERS = 16  # frames files an update reads at once (each a footer and a few column chunks)


def live_files(output: str, version: int | None) -> list[str]:
    """The files of the frames table at `version`, relative to the table."""
    table = delta.open_table(output, "frames", version) if version is not None else None
    return delta.file_paths(table) if table is not None else []


def indexed_version(output: str, table) -> int | None:
    """The frames version the index `table` was last brought up to (its last update records it)."""
    for version in range(table.version(), -1, -1):  # vacuum commits record none
        info = delta.commit_info(output, NAME, version)
        if delta.META_KEY in info:
            return json.loads(info[delta.META_KEY]).get("frames")
    return None


def _index(output: str):
    """The index's latest version, and the frames files each of its files holds rows of."""
    table = delta.open_table(output, NAME)
    if table is None:
        return None, {}
    return table, {
        path: set(sources) for path, sources in delta.values_by_file(output, NAME, table, META, "source_file").items()
    }


def update(output: str, run_id: str, at_least: int = 0) -> tuple[int, int]:
    """Bring the index up to the latest snapshot, unless fewer than `at_least` of its frames files
    are missing from it (a run passes AUTO_NEW_FILES). Returns (frames files added, index files
    rewritten)."""
    from deltalake import CommitProperties
    from deltalake.transaction import RemoveAction

    _, versions = delta.snapshot(output)
    live = set(live_files(output, versions.others.get("frames")))
    table, held = _index(output)
    missing = sorted(live - set().union(*held.values()))
    if len(missing) < at_least:
        return 0, 0
    if table is None:
        table = delta.create_table(output, NAME, META)
    now, actions, rewritten, seq = delta.now_ms(), [], 0, 0
    for start in range(0, len(missing), 10_000):
        rows = _rows(output, missing[start : start + 10_000])
        for offset in range(0, rows.num_rows, FILE_ROWS):
            actions.append(
                delta.write_file(output, NAME, rows.slice(offset, FILE_ROWS), layout.clips_path(run_id, seq), now)
            )
            seq += 1
    for path, sources in sorted(held.items()):
        dead = sources - live
        if len(dead) > DEAD_SHARE * len(sources):  # rows per file are about equal: a share of files
            rewritten += 1
            actions.append(RemoveAction(path, True, now, None, {}))
            rows = pq.read_table(_uri(output, path), schema=META, filesystem=delta.filesystem(output)[0])
            rows = rows.filter(pc.invert(pc.is_in(rows["source_file"], value_set=pa.array(sorted(dead)))))
            if rows.num_rows:
                actions.append(delta.write_file(output, NAME, rows, layout.clips_path(run_id, seq), now))
                seq += 1
    if actions:
        metadata = {delta.META_KEY: json.dumps({"frames": versions.others.get("frames"), "run_id": run_id})}
        table.create_write_transaction(
            actions, mode="append", schema=table.schema(), commit_properties=CommitProperties(custom_metadata=metadata)
        )
    return len(missing), rewritten


def _uri(output: str, path: str) -> str:
    return f"{delta.filesystem(output)[1]}/{NAME}/{path}"


def _rows(output: str, paths: list[str]) -> pa.Table:
    """The small columns of frames files, each row with its file; READERS files at a time."""
    dataset = delta.files_dataset(output, "frames", paths, FRAMES)
    columns = [n for n in META.names if n != "source_file"]

    def read(pair) -> pa.Table:
        fragment, path = pair
        rows = fragment.to_table(schema=FRAMES, columns=columns, use_threads=False)
        return rows.append_column("source_file", pa.array([path] * rows.num_rows, pa.string()))

    with ThreadPoolExecutor(READERS) as pool:
        parts = list(pool.map(read, zip(dataset.get_fragments(), paths, strict=True)))
    return pa.concat_tables(parts).cast(META) if parts else META.empty_table()


_STAR = re.compile(r"(^|[\s,.(])\*(?!\s*\))")  # SELECT * or f.*, not count(*)
_COLUMNS = re.compile(r"\bcolumns\s*\(", re.IGNORECASE)  # DuckDB's COLUMNS(...) selects by pattern


def needs_files(sql: str) -> bool:
    """Whether `sql` may read the PNG or JPEG columns: by name, through a `*`, or through COLUMNS()."""
    named = re.search(r"\b(" + "|".join(BLOBS) + r")\b", sql, re.IGNORECASE)
    return bool(named or _STAR.search(sql) or _COLUMNS.search(sql))


def register_frames(con, output: str, frames, version: int) -> None:
    """Register `frames` in the DuckDB connection `con`: the rows of the frames table `frames`
    (opened at `version`, a snapshot's) without the PNG and JPEG columns, from the index where it
    holds them, and from the files themselves where it does not."""
    table = delta.open_table(output, NAME)
    if table is None:
        con.register("frames", delta.dataset(output, "frames", frames, FRAMES))
        return
    live = delta.file_paths(frames)
    indexed_at = indexed_version(output, table)
    held = set(live) if indexed_at == version else set(live_files(output, indexed_at))
    indexed = [p for p in live if p in held]
    rest = [p for p in live if p not in held]
    con.register("_frames_indexed", pa.table({"source_file": pa.array(indexed, pa.string())}))
    con.register("_frames_meta", delta.dataset(output, NAME, table, META))
    con.register("_frames_rest", delta.files_dataset(output, "frames", rest, FRAMES))
    small = ", ".join(f'"{n}"' for n in META.names if n != "source_file")
    con.execute(
        f"CREATE TEMP VIEW frames AS SELECT {small} FROM _frames_meta "
        "WHERE source_file IN (SELECT source_file FROM _frames_indexed) "
        f"UNION ALL SELECT {small} FROM _frames_rest"
    )
