"""Upgrading a manifest written before Delta Lake (manifest version 4 and older) in place.

Such a manifest has its frames and captions as one file per clip (TABLE/KK/KEY.parquet), which are
Parquet files of the same columns, and one clips/clips.parquet. The upgrade copies no frames: it
writes each per-clip table's log, adding the files as they are (their statistics come from their
footers); then it writes the clips rows as the clips table's first file, commits it with the
versions of the other tables, and removes clips/clips.parquet. The clips table comes last, so an
upgrade that is cut off is done again from the start by the next one, and until then readers get
the old manifest's one clear line. `enrich migrate OUTPUT` runs it; so does the next `enrich run`,
under its lock.
"""

from __future__ import annotations

import time

import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest import delta, layout
from enrich.manifest.commit import file_stats, with_current_columns


def needed(output: str) -> bool:
    return not delta.is_table(output, "clips") and storage.exists(layout.legacy_clips_file(output))


def legacy_clips(output: str):
    """The clips rows of a manifest that has not been upgraded (for a plan, which writes nothing)."""
    return with_current_columns(pq.read_table(storage.read_arrow(layout.legacy_clips_file(output))))


def run(output: str) -> str:
    """`enrich migrate OUTPUT`: upgrade under OUTPUT's lock; one line saying what was done."""
    from enrich.errors import UsageError
    from enrich.lock import Lock
    from enrich.pipeline.records import new_run_id

    if delta.is_table(output, "clips"):
        return f"{output}: already a manifest of Delta Lake tables; nothing to do"
    if not needed(output):
        raise UsageError(f"{output} is not an enrich manifest (no clips table)")
    lock = Lock(output).acquire()
    try:
        n = upgrade(output, new_run_id(), print)
    finally:
        lock.release()
    return f"{output}: upgraded in place to Delta Lake tables ({n} clips)"


def upgrade(output: str, run_id: str, log=None) -> int:
    """Upgrade the manifest at `output`, whose lock the caller holds. Returns the clips it holds."""
    from deltalake.transaction import AddAction

    from enrich.manifest.publish import Publisher
    from enrich.manifest.schema import PER_CLIP

    clips = legacy_clips(output)
    versions = {}
    for name, schema in PER_CLIP.items():
        folder = layout.table_dir(output, name)
        uris = [u for u in storage.list_uris(folder) if u.endswith(".parquet") and "/_delta_log/" not in u]
        if not uris and name != "frames":
            continue
        storage.delete_prefix(storage.join(folder, "_delta_log"))  # a log left by an upgrade cut off
        table = delta.create_table(output, name, schema)
        adds = [_add(uri, folder, AddAction) for uri in uris]
        if adds:
            table.create_write_transaction(adds, mode="append", schema=table.schema())
            table.update_incremental()
        versions[name] = table.version()
        if log:
            log(f"migrate: {name}: {len(adds)} files added to its new Delta log, as they are")
    publisher = Publisher(output, run_id)
    publisher.versions = versions
    publisher.publish_rows(clips)
    storage.delete(layout.legacy_clips_file(output))
    return clips.num_rows


def _add(uri: str, folder: str, action):
    """The Add of a per-clip file, with the statistics that let readers skip it by clip."""
    size = storage.stat(uri).size
    frames = pq.read_table(storage.open_input(uri), columns=["clip_id"])
    clip_id = frames["clip_id"][0].as_py() if frames.num_rows else ""
    stats = file_stats(clip_id, frames.num_rows)
    return action(storage.relative(uri, folder), size, {}, int(time.time() * 1000), True, stats)
