"""Turning a clip's staged parts into its files of the manifest's tables, one clip at a time.

A clip's frames live in one file of the frames table (`layout.clip_path`), a new one each run. A
stage with a table of its own (captions) has a file per clip there too, and may be redone alone
(`frames=False`). Writing a file publishes nothing: readers see it once the driver commits it to
the table's log with the clip's clips row (`enrich.manifest.publish`), and the commit removes the
clip's older file from the table in the same step.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest.layout import clip_parts, clip_path, legacy_clips_file, table_dir
from enrich.manifest.schema import CLIPS, FRAMES, TABLE_KEY, TABLES
from enrich.runtime import yield_to_models

ROW_GROUP_FRAMES = 32  # keeps reads of a few frames from pulling a whole clip ...
ROW_GROUP_BYTES = 32 * 2**20  # ... and bounds what the commit holds at once: 4K maps are ~10-50 MB a frame
# PNG and JPEG are compressed already: Snappy would only spend time and a buffer of their size on them.
UNCOMPRESSED = ("depth_png", "flow_png", "thumb_jpeg")
COMPRESSION = {name: "none" if name in UNCOMPRESSED else "snappy" for name in FRAMES.names}


def write_clip(
    output: str,
    staging: str,
    clip_id: str,
    run_id: str,
    ok: bool,
    finish=None,
    nice: int = 0,
    frames: bool = True,
    tables: tuple[str, ...] = (),
    withdraw: tuple[str, ...] = (),
) -> tuple[int, dict, dict[str, dict | None]]:
    """Write a finished clip's files: in frames unless `frames` is False, and in each of `tables`;
    a failed clip (`ok` False) writes none, and its files in those tables are to be removed, as are
    those in `withdraw` (a stage that did not run, on content that changed).

    `finish(summary) -> (columns, figures)` sees the clip's small per-frame columns (`finish.reads`)
    whole and in frame order, and returns the columns it rewrites (`enrich.stages.temporal`). The
    large columns are streamed from the staged parts into the file a row group at a time, so memory
    is bounded by a row group, not by the clip. Returns the frames written, the figures, and per
    table the file to add (its `path` in the table, `size` and Delta `stats`, which
    `enrich.manifest.publish` commits), or None: remove the clip's file there. `nice`: see
    `enrich.runtime.yield_to_models`."""
    yield_to_models(nice)
    parts_prefix = clip_parts(staging, clip_id)
    uris = storage.list_uris(parts_prefix)
    rows, figures = 0, {}
    files: dict[str, dict | None] = {name: None for name in (("frames",) if frames else ()) + tables + withdraw}
    if ok and uris:
        path = clip_path(clip_id, run_id)
        with _Parts(uris) as parts:
            if frames:
                target = storage.join(table_dir(output, "frames"), path)
                rows, figures, files["frames"] = _publish(target, parts, finish, clip_id, staging)
                files["frames"]["path"] = path
            for table in tables:
                target = storage.join(table_dir(output, table), path)
                files[table] = _publish_table(target, table, parts, clip_id, staging)
                if files[table] is not None:
                    files[table]["path"] = path
    storage.delete_prefix(parts_prefix)
    return rows, figures, files


def file_stats(clip_id: str, rows: int) -> str:
    """The Delta `stats` of a per-clip file of `rows` rows: its clip, which lets readers skip it.
    Nothing more: delta-rs parses every live file's stats at each commit and load, so each column
    here costs every commit 0.3-0.9 µs a file of the table (`benchmarks/delta_commit.py`)."""
    return json.dumps({"numRecords": rows, "minValues": {"clip_id": clip_id}, "maxValues": {"clip_id": clip_id},
                       "nullCount": {"clip_id": 0}})  # fmt: skip


def _publish_table(target: str, table: str, parts: _Parts, clip_id: str, scratch: str) -> dict | None:
    """The clip's rows of a stage's own table (those with a value in its first column), in frame
    order, as one file (None when it has none). These tables are small (a caption per window), so
    they are read whole."""
    schema = TABLES[table]
    found = pa.concat_tables(parts.file(p).read(columns=schema.names).cast(schema) for p in range(len(parts)))
    found = found.filter(pc.is_valid(found[schema.names[len(TABLE_KEY)]]))  # the stage's first column
    found = found.take(pc.sort_indices(found, sort_keys=[("frame_index", "ascending")]))
    if not found.num_rows:
        return None
    with storage.atomic_output(target, scratch) as out:
        pq.write_table(found, out, compression="snappy")
        size = out.tell()
    return {"size": size, "stats": file_stats(clip_id, found.num_rows)}


class _Parts:
    """A clip's staged parts, opened on demand and a few at a time (a long clip has thousands; rows
    are read in frame order, which mostly walks the parts in order). Each footer is read once."""

    OPEN = 8

    def __init__(self, uris: list[str]):
        self.uris = uris
        self.metadata: list[pq.FileMetaData | None] = [None] * len(uris)
        self._open: OrderedDict[int, pq.ParquetFile] = OrderedDict()

    def __len__(self) -> int:
        return len(self.uris)

    def __enter__(self) -> _Parts:
        return self

    def __exit__(self, *exc) -> None:
        while self._open:
            self._open.popitem()[1].close(force=True)

    def file(self, part: int) -> pq.ParquetFile:
        if part in self._open:
            self._open.move_to_end(part)
            return self._open[part]
        source = storage.open_input(self.uris[part])
        f = pq.ParquetFile(source, metadata=self.metadata[part], pre_buffer=False)
        self.metadata[part] = f.metadata
        self._open[part] = f
        if len(self._open) > self.OPEN:
            self._open.popitem(last=False)[1].close(force=True)
        return f

    def row(self, part: int, group: int, row: int) -> pa.Table:
        return self.file(part).read_row_group(group, columns=FRAMES.names).slice(row, 1).cast(FRAMES)

    def row_bytes(self, part: int, group: int) -> int:
        metadata = self.metadata[part].row_group(group)
        return metadata.total_byte_size // max(1, metadata.num_rows)


def _publish(target: str, parts: _Parts, finish, clip_id: str, scratch: str) -> tuple[int, dict, dict]:
    where, summaries = [], []  # every staged row, in frame order: (frame_index, part, row group, row in it)
    reads = ["frame_index", *(finish.reads if finish is not None else ())]
    for p in range(len(parts)):
        f = parts.file(p)
        for g in range(f.num_row_groups):
            summary = f.read_row_group(g, columns=reads)
            summaries.append(summary)
            where += [(frame, p, g, r) for r, frame in enumerate(summary["frame_index"].to_pylist())]
    order = sorted(range(len(where)), key=where.__getitem__)  # one sort serves the rows and their summaries
    where = [where[i] for i in order]
    columns, figures = {}, {}
    if finish is not None:
        summary = pa.concat_tables(summaries).take(order)
        del summaries
        try:
            columns, figures = finish(summary)
        except Exception as exc:  # the clip's rows are good: publish them as they are, and say why
            reason = f"{type(exc).__name__}: {exc}"
            figures = {"warning": f"{clip_id}: clip-level step failed, rows kept as computed ({reason})"}
    with storage.atomic_output(target, scratch) as out:  # a temporary file in the staging, removed if we die
        with pq.ParquetWriter(out, FRAMES, compression=COMPRESSION) as writer:
            for start, stop in _row_groups(where, parts):
                group = pa.concat_tables(parts.row(*where[i][1:]) for i in range(start, stop))
                for name, values in columns.items():
                    i = group.schema.get_field_index(name)
                    group = group.set_column(i, group.schema.field(name), values.slice(start, stop - start))
                writer.write_table(group, row_group_size=group.num_rows)
        size = out.tell()
    return len(where), figures, {"size": size, "stats": file_stats(clip_id, len(where))}


def _row_groups(where: list[tuple], parts: _Parts):
    """(start, stop) of each published row group: ROW_GROUP_FRAMES rows, or fewer when they would
    hold more than ROW_GROUP_BYTES."""
    start, size = 0, 0
    for i, (_, part, group, _) in enumerate(where):
        row_bytes = parts.row_bytes(part, group)
        if i > start and (i - start >= ROW_GROUP_FRAMES or size + row_bytes > ROW_GROUP_BYTES):
            yield start, i
            start, size = i, 0
        size += row_bytes
    if where:
        yield start, len(where)


def require_manifest(output: str) -> None:
    """UsageError (one line, exit 2) unless `output` holds an enrich manifest of this version."""
    from enrich.errors import UsageError
    from enrich.manifest import delta

    with storage.s3_errors(output):
        if delta.is_table(output, "clips"):
            return
        if storage.exists(legacy_clips_file(output)):
            raise UsageError(f"{output} is a manifest of an older enrich; upgrade it with: enrich migrate {output}")
        raise UsageError(f"{output} is not an enrich manifest (no clips table)")


def read_clips(output: str, columns: list[str] | None = None, clip_ids=None) -> pa.Table | None:
    """The clips' current rows in the table's latest version (of `clip_ids`, default all; those
    `columns`, default all); None before the first commit."""
    import pyarrow.dataset as ds

    from enrich.manifest import delta

    table = delta.open_table(output, "clips")
    if table is None:
        return None
    where = None if clip_ids is None else ds.field("clip_id").isin(list(clip_ids))
    read = None if columns is None else list(dict.fromkeys([*columns, "clip_id", "clips_version"]))
    rows = current(delta.dataset(output, "clips", table, CLIPS).to_table(columns=read, filter=where))
    return rows if columns is None else rows.select(columns)


# The clips table's current rows, in SQL over its rows (`enrich.query` registers it as `clips`).
CURRENT_SQL = (
    "SELECT * FROM {rows} QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY clips_version DESC NULLS LAST) = 1"
)


def current(rows: pa.Table) -> pa.Table:
    """Of the clips table's `rows`, each clip's current one: the largest `clips_version` (a commit
    adds a re-enriched clip's row and leaves its older one, until `enrich compact` or the run's end
    drops it). Rows in clip_id order when any were dropped."""
    ids = rows["clip_id"]
    if pc.count_distinct(ids).as_py() == rows.num_rows:
        return rows
    keys = [("clip_id", "ascending", "at_end"), ("clips_version", "descending", "at_end")]
    rows = rows.take(pc.sort_indices(rows, sort_keys=keys))
    ids = rows["clip_id"].combine_chunks()
    return rows.filter(pa.concat_arrays([pa.array([True]), pc.not_equal(ids[1:], ids[:-1])]))  # each clip's first


def with_current_columns(table: pa.Table) -> pa.Table:
    """A clips table written by an older version, with the columns added since as nulls."""
    for f in CLIPS:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table


def clips_rows(rows: list[dict]) -> pa.Table:
    """Finished clips' rows as a clips table, stamped with the time."""
    now = datetime.now(UTC).replace(microsecond=0)
    return pa.Table.from_pylist([{**r, "updated_at": now} for r in rows], schema=CLIPS)
