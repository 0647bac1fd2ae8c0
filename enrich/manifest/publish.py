"""Publishing finished clips: one commit per table for a batch of clips, clips table last.

The clips' files are written already (`enrich.manifest.commit.write_clip`). A batch is published
by committing, to each per-clip table (frames, captions), the new files and the removal of the
files they replace, in one Delta transaction; then the clips rows, with the versions those
commits made (`enrich.manifest.delta`). The cost of a batch is that of its own clips: a per-clip
table finds a clip's file in a map of the table's files, and the clips table rewrites only the
files that held the batch's clips (a file per commit, so none is bigger than one batch).

A run that dies between the commits leaves frames committed ahead of their clips rows: readers
of the manifest never see them (they open frames at the version clips names), and the next run
redoes those clips, since their clips rows say they are not done.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest import delta, layout
from enrich.manifest.commit import clips_rows
from enrich.manifest.schema import CLIPS, PER_CLIP

REWRITERS = 16  # clips files rewritten at once by a commit


@dataclass
class Finished:
    """A clip ready to publish: its clips row, and per table the file to add or None (remove its file)."""

    row: dict
    files: dict[str, dict | None] = field(default_factory=dict)


class Publisher:
    """The writer of a manifest's tables, held by the run that holds OUTPUT's lock."""

    def __init__(self, output: str, run_id: str, scratch: str | None = None):
        """`scratch`: where the clips files are written before they are renamed into place (the
        run's staging, which is removed however the run ends; `storage.atomic_output`)."""
        self.output, self.run_id, self.seq, self.scratch = output, run_id, 0, scratch
        self.tables: dict[str, object] = {}
        self.current: dict[str, dict[str, str]] = {}  # table -> clip key -> its file, for per-clip tables
        self.holders: dict[str, str] | None = None  # clip_id -> the clips-table file that holds its row
        self.versions: dict[str, int | None] = {}
        self.named: dict[str, int | None] | None = None  # the versions the clips table named when we began

    def _table(self, name: str):
        if name not in self.tables:
            schema = CLIPS if name == "clips" else PER_CLIP[name]
            table = delta.open_table(self.output, name)
            if table is None:
                table = delta.create_table(self.output, name, schema)
            delta.evolve(table, schema)
            self.tables[name] = table
            if name in PER_CLIP:
                self._undo_unrecorded(name, table)
                self.current[name] = {layout.key_of(p): p for p in delta.file_paths(table)}
        return self.tables[name]

    def _undo_unrecorded(self, name: str, table) -> None:
        """A run that died between its commits left this table ahead of the version the clips table
        names. Restore that version (a commit that re-adds and removes files, copying nothing) before
        committing on top: the dead run's clips are redone, and no clips commit names its files."""
        if self.named is None:  # the snapshot readers see, read once
            self.named = delta.snapshot(self.output)[1].others if delta.is_table(self.output, "clips") else {}
        named = self.named.get(name)
        target = 0 if named is None else named
        latest = table.version()
        ops = {delta.commit_info(self.output, name, v).get("operation") for v in range(target + 1, latest + 1)}
        if ops - {"VACUUM START", "VACUUM END", None}:
            table.restore(target)
            table.update_incremental()

    def open(self) -> None:
        """Read what the commits need of the tables' logs (done by the first commit otherwise)."""
        for name in PER_CLIP:
            if delta.is_table(self.output, name):
                self._table(name)
        if delta.is_table(self.output, "clips") and self.holders is None:
            self.holders = self._holders(self._table("clips"))

    def publish(self, batch: list[Finished]) -> dict[str, int]:
        """Commit `batch`: each per-clip table it touches, then its clips rows. Returns the
        versions made."""
        if not batch:
            return {}
        for name in PER_CLIP:
            touched = [(f.row["clip_id"], f.files[name]) for f in batch if name in f.files]
            if touched:
                self.versions[name] = self._commit_files(name, touched)
            elif name not in self.versions:
                table = delta.open_table(self.output, name)
                self.versions[name] = table.version() if table is not None else None
        return self.publish_rows(clips_rows([f.row for f in batch]))

    def publish_rows(self, rows: pa.Table) -> dict[str, int]:
        """Commit clips `rows` (replacing those clips' rows) with the versions of the other tables."""
        from deltalake import CommitProperties

        self.seq += 1
        clips = self._table("clips")
        adds, removes = self._clips_actions(rows)
        properties = CommitProperties(custom_metadata=delta.commit_metadata(self.versions, self.run_id))
        actions = adds + removes
        clips.create_write_transaction(actions, mode="append", schema=clips.schema(), commit_properties=properties)
        clips.update_incremental()
        return {**self.versions, "clips": clips.version()}

    def _commit_files(self, name: str, touched: list[tuple[str, dict | None]]) -> int:
        from deltalake.transaction import AddAction, RemoveAction

        table, now = self._table(name), delta.now_ms()
        current = self.current[name]
        actions = []
        for clip_id, file in touched:
            key = layout.clip_key(clip_id)
            old = current.pop(key, None)
            if old is not None and (file is None or old != file["path"]):
                actions.append(RemoveAction(old, True, now, None, {}))
            if file is not None:
                actions.append(AddAction(file["path"], file["size"], {}, now, True, file["stats"]))
                current[key] = file["path"]
        if actions:
            table.create_write_transaction(actions, mode="append", schema=table.schema())
            table.update_incremental()
        return table.version()

    def _clips_actions(self, new: pa.Table) -> tuple[list, list]:
        """The clips table's new file of rows `new`, and the rewrite of each file that held one of
        them (in parallel: on S3 each is a GET and a PUT)."""
        from deltalake.transaction import RemoveAction

        table, now = self._table("clips"), delta.now_ms()
        if self.holders is None:
            self.holders = self._holders(table)
        ids = set(new["clip_id"].to_pylist())
        olds = sorted({self.holders[c] for c in ids if c in self.holders})

        def rewrite(piece: int, old: str):
            source = storage.read_arrow(storage.join(layout.table_dir(self.output, "clips"), old))  # one GET: small
            kept = pq.read_table(source, schema=CLIPS)  # an older file lacks newer columns: nulls
            kept = kept.filter(pc.invert(pc.is_in(kept["clip_id"], value_set=new["clip_id"])))
            if not kept.num_rows:
                return None, []
            return self._write(kept, layout.clips_path(self.run_id, self.seq, piece), now), kept["clip_id"].to_pylist()

        with ThreadPoolExecutor(REWRITERS) as pool:
            rewritten = list(pool.map(rewrite, range(len(olds)), olds))
        adds = [self._write(new, layout.clips_path(self.run_id, self.seq), now)]
        removes = [RemoveAction(old, True, now, None, {}) for old in olds]
        for add, kept in rewritten:
            if add is not None:
                adds.append(add)
                self.holders.update(dict.fromkeys(kept, add.path))
        self.holders.update(dict.fromkeys(ids, adds[0].path))
        return adds, removes

    def _write(self, rows: pa.Table, path: str, now: int):
        return delta.write_file(
            self.output, "clips", rows.select(CLIPS.names).cast(CLIPS), path, now, scratch=self.scratch
        )

    def _holders(self, table) -> dict[str, str]:
        """clip_id -> the clips-table file that holds its row (read once, then kept up to date)."""
        by_file = delta.values_by_file(self.output, "clips", table, CLIPS, "clip_id")
        return {clip_id: path for path, ids in by_file.items() for clip_id in ids}
