"""Publishing finished clips: one commit per table for a batch of clips, clips table last.

The clips' files are written already (`enrich.manifest.commit.write_clip`). A batch is published
by committing, to each per-clip table (frames, captions), the new files and the removal of the
files they replace, in one Delta transaction; then the clips rows, as one new file of the clips
table, with the versions those commits made (`enrich.manifest.delta`). The cost of a batch is
that of its own clips, whatever the size of the catalogue:

- enrich writes the commits itself (`delta.commit`): delta-rs' commit goes over every live file;
- a per-clip table finds a clip's older file in a map of the table's files, read once per run;
- the clips table is not rewritten: a re-enriched clip's older row stays in its file, and the new
  row's larger `clips_version` makes it the current one (`enrich.manifest.commit.current`, which
  every reader applies). The run's end drops the older rows (`enrich.manifest.compact`).

A run that dies between the commits leaves frames committed ahead of their clips rows: readers
of the manifest never see them (they open frames at the version clips names), and the next run
redoes those clips, since their clips rows say they are not done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from enrich.manifest import delta, layout
from enrich.manifest.commit import clips_rows
from enrich.manifest.schema import CLIPS, PER_CLIP


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
        self.tables: dict[str, object] = {}  # as loaded when first needed (then `at` says where they are)
        self.at: dict[str, int] = {}  # table -> its latest version
        self.own: dict[str, bool] = {}  # table -> whether enrich writes its commits (`delta.commit`)
        self.current: dict[str, dict[str, str]] = {}  # table -> clip key -> its file, for per-clip tables
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
            self.own[name] = delta.own_commits(table)
            if name in PER_CLIP:
                self._undo_unrecorded(name, table)
                self.current[name] = {layout.key_of(p): p for p in delta.file_paths(table)}
            self.at[name] = table.version()
        return self.tables[name]

    def _commit(self, name: str, actions: list, metadata: dict[str, str] | None = None) -> int:
        """Commit `actions` to the table `name`; returns the version made. enrich writes the commit
        itself (`delta.commit`), so its cost is that of the actions, not of the table's files, and
        every CHECKPOINT_INTERVAL versions it has delta-rs write a checkpoint, as delta-rs would."""
        from deltalake import CommitProperties

        table = self._table(name)
        if not self.own[name]:
            properties = CommitProperties(custom_metadata=metadata) if metadata else None
            table.create_write_transaction(actions, mode="append", schema=table.schema(), commit_properties=properties)
            table.update_incremental()
            self.at[name] = table.version()
            return self.at[name]
        self.at[name] = delta.commit(self.output, name, self.at[name], actions, metadata)
        if self.at[name] % delta.CHECKPOINT_INTERVAL == 0:
            table.update_incremental()
            table.create_checkpoint()
        return self.at[name]

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
        if delta.is_table(self.output, "clips"):
            self._table("clips")

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
        """Commit clips `rows` (which supersede those clips' older rows) with the versions of the
        other tables."""
        self.seq += 1
        self._table("clips")
        stamp = pa.array([self.at["clips"] + 1] * rows.num_rows, pa.int64())  # the version this commit makes
        rows = rows.set_column(rows.schema.get_field_index("clips_version"), "clips_version", stamp)
        add = self._write(rows, layout.clips_path(self.run_id, self.seq), delta.now_ms())
        version = self._commit("clips", [add], delta.commit_metadata(self.versions, self.run_id))
        return {**self.versions, "clips": version}

    def _commit_files(self, name: str, touched: list[tuple[str, dict | None]]) -> int:
        from deltalake.transaction import AddAction, RemoveAction

        self._table(name)
        now, current = delta.now_ms(), self.current[name]
        actions = []
        for clip_id, file in touched:
            key = layout.clip_key(clip_id)
            old = current.pop(key, None)
            if old is not None and (file is None or old != file["path"]):
                actions.append(RemoveAction(old, True, now, None, {}))
            if file is not None:
                actions.append(AddAction(file["path"], file["size"], {}, now, True, file["stats"]))
                current[key] = file["path"]
        return self._commit(name, actions) if actions else self.at[name]

    def _write(self, rows: pa.Table, path: str, now: int):
        return delta.write_file(
            self.output, "clips", rows.select(CLIPS.names).cast(CLIPS), path, now, scratch=self.scratch
        )
