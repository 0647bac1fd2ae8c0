"""Turning staged parts into what readers see, one clip at a time.

A clip's frames live in exactly one file, frames/KK/KEY.parquet. Committing writes that file in one
atomic step (replacing any older version), so a reader sees a clip's old rows or its new rows,
never both and never half. The clips table is one file, replaced atomically at checkpoints.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest.schema import CLIPS, FRAMES, clip_key, frames_file
from enrich.runtime import yield_to_models

ROW_GROUP_FRAMES = 32  # keeps reads of a few frames from pulling a whole clip


def table_bytes(table: pa.Table, **kwargs) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    return buffer.getvalue()


def commit_clip(output: str, staging: str, clip_id: str, ok: bool, finish=None, nice: int = 0) -> tuple[int, dict]:
    """Publish a finished clip (or withdraw a failed one's old rows).

    `finish(table) -> (table, figures)` sees the clip's rows whole and in frame order before they
    are published (`enrich.stages.temporal`). Returns the rows published and those figures. `nice`:
    see `enrich.runtime.yield_to_models`."""
    yield_to_models(nice)
    parts_prefix = storage.join(staging, clip_key(clip_id))
    parts = storage.list_uris(parts_prefix)
    target = frames_file(output, clip_id)
    rows, figures = 0, {}
    if ok and parts:
        tables = [pq.read_table(io.BytesIO(storage.read_bytes(uri)), schema=FRAMES) for uri in parts]
        table = pa.concat_tables(tables)
        table = table.take(pc.sort_indices(table, sort_keys=[("frame_index", "ascending")]))
        if finish is not None:
            try:
                table, figures = finish(table)
            except Exception as exc:  # the clip's rows are good: publish them as they are, and say why
                reason = f"{type(exc).__name__}: {exc}"
                figures = {"warning": f"{clip_id}: clip-level step failed, rows kept as computed ({reason})"}
        storage.write_bytes(target, table_bytes(table, row_group_size=ROW_GROUP_FRAMES))
        rows = table.num_rows
    else:
        storage.delete(target)
    storage.delete_prefix(parts_prefix)
    return rows, figures


def clips_file(output: str) -> str:
    return storage.join(output, "clips", "clips.parquet")


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
    return with_current_columns(pq.read_table(io.BytesIO(storage.read_bytes(uri))))


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
