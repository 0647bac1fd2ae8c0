"""Turning staged parts into what readers see, one clip at a time.

A clip's frames live in exactly one file, frames/KK/KEY.parquet. Committing writes that file in one
atomic step (replacing any older version), so a reader sees a clip's old rows or its new rows,
never both and never half. A stage with a table of its own (captions) has a file per clip there,
written the same way, and may be committed alone (`frames=False`). The clips table is one file,
replaced atomically at checkpoints.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest.layout import clip_file, clip_parts, clips_file, frames_file
from enrich.manifest.schema import CLIPS, FRAMES, TABLE_KEY, TABLES
from enrich.runtime import yield_to_models

ROW_GROUP_FRAMES = 32  # keeps reads of a few frames from pulling a whole clip ...
ROW_GROUP_BYTES = 32 * 2**20  # ... and bounds what the commit holds at once: 4K maps are ~10-50 MB a frame
# PNG and JPEG are compressed already: Snappy would only spend time and a buffer of their size on them.
UNCOMPRESSED = ("depth_png", "flow_png", "thumb_jpeg")
COMPRESSION = {name: "none" if name in UNCOMPRESSED else "snappy" for name in FRAMES.names}


def table_bytes(table: pa.Table, **kwargs) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    return buffer.getvalue()


def commit_clip(
    output: str,
    staging: str,
    clip_id: str,
    ok: bool,
    finish=None,
    nice: int = 0,
    frames: bool = True,
    tables: tuple[str, ...] = (),
    withdraw: tuple[str, ...] = (),
) -> tuple[int, dict]:
    """Publish a finished clip (or withdraw a failed one's old rows): its frames file unless
    `frames` is False, and its file in each of `tables`; `withdraw`: tables whose file for the clip
    is removed (a stage that did not run, on content that changed).

    `finish(summary) -> (columns, figures)` sees the clip's small per-frame columns (`finish.reads`)
    whole and in frame order, and returns the columns it rewrites (`enrich.stages.temporal`). The
    large columns are streamed from the staged parts into the published file a row group at a time,
    so memory is bounded by a row group, not by the clip. Returns the frames published and the
    figures. `nice`: see `enrich.runtime.yield_to_models`."""
    yield_to_models(nice)
    parts_prefix = clip_parts(staging, clip_id)
    uris = storage.list_uris(parts_prefix)
    target = frames_file(output, clip_id)
    rows, figures = 0, {}
    if ok and uris:
        with _Parts(uris) as parts:
            if frames:
                rows, figures = _publish(target, parts, finish, clip_id)
            for table in tables:
                _publish_table(clip_file(output, table, clip_id), table, parts)
    else:
        for uri in ([target] if frames else []) + [clip_file(output, t, clip_id) for t in tables]:
            storage.delete(uri)
    for table in withdraw:
        storage.delete(clip_file(output, table, clip_id))
    storage.delete_prefix(parts_prefix)
    return rows, figures


def _publish_table(target: str, table: str, parts: _Parts) -> None:
    """The clip's rows of a stage's own table (those with a value in its first column), in frame
    order, as one file. These tables are small (a caption per window), so they are read whole."""
    schema = TABLES[table]
    found = pa.concat_tables(parts.file(p).read(columns=schema.names).cast(schema) for p in range(len(parts)))
    found = found.filter(pc.is_valid(found[schema.names[len(TABLE_KEY)]]))  # the stage's first column
    found = found.take(pc.sort_indices(found, sort_keys=[("frame_index", "ascending")]))
    with storage.atomic_output(target) as out:
        pq.write_table(found, out, compression="snappy")


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


def _publish(target: str, parts: _Parts, finish, clip_id: str) -> tuple[int, dict]:
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
    with storage.atomic_output(target) as out, pq.ParquetWriter(out, FRAMES, compression=COMPRESSION) as writer:
        for start, stop in _row_groups(where, parts):
            group = pa.concat_tables(parts.row(*where[i][1:]) for i in range(start, stop))
            for name, values in columns.items():
                i = group.schema.get_field_index(name)
                group = group.set_column(i, group.schema.field(name), values.slice(start, stop - start))
            writer.write_table(group, row_group_size=group.num_rows)
    return len(where), figures


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
    """UsageError (one line, exit 2) unless `output` holds an enrich manifest."""
    from enrich.errors import UsageError

    with storage.s3_errors(output):
        if not storage.exists(clips_file(output)):
            raise UsageError(f"{output} is not an enrich manifest (no clips/clips.parquet)")


def read_clips(output: str) -> pa.Table | None:
    uri = clips_file(output)
    if not storage.exists(uri):
        return None
    return with_current_columns(pq.read_table(storage.read_arrow(uri)))


def with_current_columns(table: pa.Table) -> pa.Table:
    """A clips table written by an older version, with the columns added since as nulls."""
    for f in CLIPS:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table


def merge_clips(previous: pa.Table | None, rows: list[dict]) -> pa.Table:
    """Previous rows, with the clips of `rows` replaced; sorted by clip_id."""
    now = datetime.now(UTC).replace(microsecond=0)
    new = pa.Table.from_pylist([{**r, "updated_at": now} for r in rows], schema=CLIPS)
    if previous is not None and previous.num_rows:
        previous = previous.select(CLIPS.names).cast(CLIPS)
        keep = pc.invert(pc.is_in(previous["clip_id"], value_set=new["clip_id"]))
        new = pa.concat_tables([previous.filter(keep), new])
    return new.take(pc.sort_indices(new, sort_keys=[("clip_id", "ascending")]))


def write_clips(output: str, table: pa.Table) -> None:
    storage.write_bytes(clips_file(output), table_bytes(table))
