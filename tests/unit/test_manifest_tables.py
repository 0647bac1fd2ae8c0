"""The manifest's Delta tables without Ray: commits of per-clip files, snapshots, compaction, vacuum
and the upgrade of an older manifest."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from enrich.errors import UsageError
from enrich.manifest import compact, delta, layout, migrate
from enrich.manifest.commit import COMPRESSION, current, file_stats, read_clips, require_manifest
from enrich.manifest.publish import Finished, Publisher
from enrich.manifest.schema import FRAMES
from enrich.query import query


def row(clip_id: str, run_id: str, **extra) -> dict:
    return dict(clip_id=clip_id, clip_uri=f"/in/{clip_id}", size_bytes=1, etag="e", status="ok", n_frames=2,
                run_id=run_id, **extra)  # fmt: skip


def frames_file(output: Path, clip_id: str, run_id: str, value: float) -> dict:
    """A clip's frames file as the writer makes it: 2 frames whose depth_scale is `value`."""
    n = 2
    columns = {name: pa.nulls(n, FRAMES.field(name).type) for name in FRAMES.names}
    columns.update(clip_id=pa.array([clip_id] * n), frame_index=pa.array([0, 5], pa.int64()),
                   depth_scale=pa.array([value] * n), run_id=pa.array([run_id] * n))  # fmt: skip
    table = pa.table([columns[name] for name in FRAMES.names], schema=FRAMES)
    path = layout.clip_path(clip_id, run_id)
    target = output / "frames" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression=COMPRESSION)
    return {"path": path, "size": target.stat().st_size, "stats": file_stats(clip_id, 2)}


def publish(output: Path, run_id: str, clips: dict[str, float]) -> dict:
    batch = [Finished(row(c, run_id), {"frames": frames_file(output, c, run_id, v)}) for c, v in clips.items()]
    return Publisher(str(output), run_id).publish(batch)


def scales(output: Path, as_of=None) -> dict[str, float]:
    table = query(str(output), "SELECT clip_id, max(depth_scale) AS s FROM frames GROUP BY 1", as_of)
    return dict(zip(table["clip_id"].to_pylist(), table["s"].to_pylist(), strict=True))


def test_a_commit_replaces_its_clips_files_and_older_snapshots_stay_readable(tmp_path):
    first = publish(tmp_path, "r1", {"a": 1.0, "b": 2.0})
    second = publish(tmp_path, "r2", {"b": 3.0, "c": 4.0})
    assert scales(tmp_path) == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert scales(tmp_path, first["clips"]) == {"a": 1.0, "b": 2.0}
    assert second["frames"] == first["frames"] + 1 and second["clips"] == first["clips"] + 1
    live = {Path(u).name for u in DeltaTable(str(tmp_path / "frames")).file_uris()}
    assert live == {Path(layout.clip_path(c, r)).name for c, r in (("a", "r1"), ("b", "r2"), ("c", "r2"))}
    assert (tmp_path / "frames" / layout.clip_path("b", "r1")).exists()  # removed from the log, kept for readers
    # a plain Delta reader sees the same rows
    assert DeltaTable(str(tmp_path / "frames")).to_pyarrow_table().num_rows == 6


def test_frames_committed_ahead_of_their_clips_rows_are_not_seen(tmp_path):
    """A run that dies between the frames commit and the clips commit: readers follow clips."""
    publish(tmp_path, "r1", {"a": 1.0})
    table = DeltaTable(str(tmp_path / "frames"))
    from deltalake.transaction import AddAction

    file = frames_file(tmp_path, "z", "r2", 9.0)
    table.create_write_transaction(
        [AddAction(file["path"], file["size"], {}, 0, True, file["stats"])], mode="append", schema=table.schema()
    )
    assert scales(tmp_path) == {"a": 1.0}
    assert DeltaTable(str(tmp_path / "frames")).to_pyarrow_table().num_rows == 4  # it is in frames' log


def test_compaction_merges_the_clips_files_and_vacuum_removes_what_no_version_needs(tmp_path):
    for i in range(5):
        publish(tmp_path, f"r{i}", {f"c{i}": float(i), "shared": float(i)})
    before = read_clips(str(tmp_path)).sort_by("clip_id").to_pylist()
    files = len(DeltaTable(str(tmp_path / "clips")).file_uris())
    assert files >= 5
    merged, into = compact.compact_clips(str(tmp_path), "compactor")
    assert (merged, into) == (files, 1)
    assert read_clips(str(tmp_path)).sort_by("clip_id").to_pylist() == before
    assert scales(tmp_path) == {**{f"c{i}": float(i) for i in range(5)}, "shared": 4.0}
    (tmp_path / "frames" / "00" / "never-committed.parquet").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "frames" / "00" / "never-committed.parquet").write_bytes(b"x")
    assert compact.vacuum(str(tmp_path), retention_hours=1) == {"frames": 0, "clips": 0}  # all newer than that
    written = len(list((tmp_path / "clips").glob("*.parquet")))
    gone = compact.vacuum(str(tmp_path), retention_hours=0)
    # frames: the 4 replaced files of 'shared', and the stray one; clips: every file but the merged one
    assert gone == {"frames": 4 + 1, "clips": written - 1}
    assert scales(tmp_path) == {**{f"c{i}": float(i) for i in range(5)}, "shared": 4.0}
    with pytest.raises(Exception):  # noqa: B017  (delta-rs or pyarrow: a file of that version is gone)
        scales(tmp_path, 1)


def test_as_of_a_time_and_before_the_manifest(tmp_path):
    import time
    from datetime import UTC, datetime

    publish(tmp_path, "r1", {"a": 1.0})
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    publish(tmp_path, "r2", {"a": 2.0})
    assert scales(tmp_path, between) == {"a": 1.0}
    with pytest.raises(UsageError, match="did not exist yet"):
        scales(tmp_path, "2001-01-01T00:00:00Z")
    with pytest.raises(UsageError, match="give a version"):
        scales(tmp_path, "yesterday")


def test_an_older_manifest_is_upgraded_in_place_without_copying_frames(tmp_path):
    (tmp_path / "frames" / "ab").mkdir(parents=True)
    file = frames_file(tmp_path, "a", "old", 1.0)
    legacy = tmp_path / "frames" / "ab" / f"{layout.clip_key('a')}.parquet"  # version 4's name
    Path(tmp_path / "frames" / file["path"]).rename(legacy)
    (tmp_path / "clips").mkdir()
    pq.write_table(pa.Table.from_pylist([row("a", "old")]), tmp_path / "clips" / "clips.parquet")
    with pytest.raises(UsageError, match="enrich migrate"):
        require_manifest(str(tmp_path))
    inode = legacy.stat().st_ino
    assert migrate.run(str(tmp_path)).endswith("upgraded in place to Delta Lake tables (1 clips)")
    assert legacy.stat().st_ino == inode and not (tmp_path / "clips" / "clips.parquet").exists()
    assert scales(tmp_path) == {"a": 1.0}
    log = (tmp_path / "frames" / "_delta_log" / f"{1:020d}.json").read_text().splitlines()
    stats = json.loads(next(json.loads(line)["add"]["stats"] for line in log if '"add"' in line))
    assert stats["minValues"]["clip_id"] == "a" and stats["numRecords"] == 2
    assert migrate.run(str(tmp_path)).endswith("nothing to do")
    assert delta.snapshot(str(tmp_path))[1].others["frames"] == 1


def test_frames_meta_serves_the_small_columns_of_any_snapshot_and_never_rows_of_replaced_files(tmp_path):
    from enrich.manifest import index

    first = publish(tmp_path, "r1", {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    assert index.update(str(tmp_path), "i1") == (4, 0)
    assert index.update(str(tmp_path), "i2") == (0, 0)  # up to date: no commit
    assert scales(tmp_path) == {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    publish(tmp_path, "r2", {"b": 5.0, "e": 6.0})  # b's indexed rows are of a replaced file now
    want = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 4.0, "e": 6.0}
    assert scales(tmp_path) == want
    assert scales(tmp_path, first["clips"]) == {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert index.update(str(tmp_path), "i3") == (2, 0)  # b's new file and e's; 1 of 4 sources dead: kept
    assert scales(tmp_path) == want and scales(tmp_path, first["clips"])["b"] == 2.0
    publish(tmp_path, "r3", {"a": 7.0})
    assert index.update(str(tmp_path), "i4") == (1, 1)  # now 2 of the first file's 4 are dead: rewritten
    assert scales(tmp_path) == {**want, "a": 7.0}
    meta = DeltaTable(str(tmp_path / index.NAME)).to_pyarrow_table()
    assert meta.num_rows == 2 * 5 and "depth_png" not in meta.column_names  # c, d; b, e; a
    # a query that reads a PNG column reads the frames files
    assert index.needs_files("SELECT depth_png FROM frames") and index.needs_files("SELECT * FROM frames")
    assert index.needs_files("SELECT f.* FROM frames f") and not index.needs_files("SELECT count(*) FROM frames")
    assert index.needs_files("SELECT COLUMNS('depth.*') FROM frames")
    assert index.needs_files("SELECT Thumb_JPEG FROM frames")
    assert not index.needs_files("SELECT clip_id, count( * ) AS n FROM frames WHERE flags.exposure GROUP BY 1")
    table = query(str(tmp_path), "SELECT clip_id, depth_png FROM frames")
    assert table.num_rows == 2 * 5


def test_a_tag_pins_a_snapshot_that_vacuum_keeps(tmp_path, capsys):
    from enrich.cli import main

    publish(tmp_path, "r1", {"a": 1.0})
    assert main(["tag", str(tmp_path), "train-v1"]) == 0
    assert "tagged version 1 as train-v1" in capsys.readouterr().out
    assert main(["tag", str(tmp_path), "train-v1"]) == 2  # never moved
    assert "exists already" in capsys.readouterr().err
    assert main(["tag", str(tmp_path), "1st"]) == 2
    publish(tmp_path, "r2", {"a": 2.0})
    assert compact.vacuum(str(tmp_path), retention_hours=0)["frames"] == 0  # a's first file: tagged
    assert scales(tmp_path, "train-v1") == {"a": 1.0} and scales(tmp_path) == {"a": 2.0}
    out = tmp_path / "set.parquet"
    assert main(["query", str(tmp_path), "SELECT clip_id FROM frames", "--as-of", "train-v1",
                 "--format", "parquet", "--out", str(out)]) == 0  # fmt: skip
    recorded = json.loads(pq.read_schema(out).metadata[b"enrich.versions"])
    assert recorded == {"clips": 1, "frames": 1, "captions": None}


def test_the_next_run_undoes_frames_committed_by_a_run_that_died_before_its_clips_commit(tmp_path):
    publish(tmp_path, "r1", {"a": 1.0, "b": 2.0})
    dead = Publisher(str(tmp_path), "r2")  # commits b's new frames, then dies before the clips commit
    dead._commit_files("frames", [("b", frames_file(tmp_path, "b", "r2", 9.0))])
    assert DeltaTable(str(tmp_path / "frames")).to_pyarrow_table()["depth_scale"].to_pylist().count(9.0) == 2
    publish(tmp_path, "r3", {"c": 3.0})  # a run that does not redo b (its caption alone, say)
    assert scales(tmp_path) == {"a": 1.0, "b": 2.0, "c": 3.0}  # b's rows are r1's, as its clips row says
    frames = DeltaTable(str(tmp_path / "frames")).to_pyarrow_table()
    assert sorted(set(frames["run_id"].to_pylist())) == ["r1", "r3"]  # what any Delta reader sees too


def test_a_newer_enrich_adds_its_columns_to_the_tables(tmp_path, monkeypatch):
    from enrich.manifest import publish as publish_module

    publish(tmp_path, "r1", {"a": 1.0, "b": 2.0})
    wider = pa.schema([*publish_module.CLIPS, ("new_column", pa.string())])
    monkeypatch.setattr(publish_module, "CLIPS", wider)
    Publisher(str(tmp_path), "r2").publish_rows(pa.Table.from_pylist([{**row("b", "r2"), "new_column": "x"}], wider))
    table = current(DeltaTable(str(tmp_path / "clips")).to_pyarrow_table())  # b's current row: r2's
    assert {r["clip_id"]: r["new_column"] for r in table.to_pylist()} == {"a": None, "b": "x"}


def test_enrich_writes_the_commits_itself_and_delta_rs_reads_and_checkpoints_them(tmp_path, monkeypatch):
    monkeypatch.setattr(delta, "CHECKPOINT_INTERVAL", 4)
    publisher = Publisher(str(tmp_path), "r1")
    for i in range(5):  # frames versions 1-5, clips versions 1-5
        run = f"r1.{i}"  # a file name of its own each time, as each run's
        publisher.publish([Finished(row(c, run), {"frames": frames_file(tmp_path, c, run, i)}) for c in "ab"])
    for name in ("frames", "clips"):
        info = delta.commit_info(str(tmp_path), name, 5)
        assert info["clientVersion"].startswith("enrich-") and info["operation"] == "WRITE"
        table = DeltaTable(str(tmp_path / name))  # a fresh reader: from the checkpoint enrich had delta-rs write
        assert table.version() == 5
        assert json.loads((tmp_path / name / "_delta_log" / "_last_checkpoint").read_text())["version"] == 4
    assert len(DeltaTable(str(tmp_path / "frames")).file_uris()) == 2  # each commit replaced a's and b's file
    assert scales(tmp_path) == {"a": 4.0, "b": 4.0} and scales(tmp_path, as_of=2) == {"a": 1.0, "b": 1.0}
    assert json.loads(delta.commit_info(str(tmp_path), "clips", 5)[delta.META_KEY])["versions"]["frames"] == 5


def test_a_commit_at_a_version_another_writer_took_is_refused_and_writes_nothing(tmp_path):
    from enrich.errors import InfrastructureError

    publish(tmp_path, "r1", {"a": 1.0})
    ours = Publisher(str(tmp_path), "r2")
    ours.open()
    publish(tmp_path, "r3", {"a": 3.0})  # a run that took OUTPUT's lock over
    taken = (tmp_path / "frames" / "_delta_log" / f"{2:020d}.json").read_bytes()
    with pytest.raises(InfrastructureError, match="another writer committed version 2 of the frames table"):
        ours.publish([Finished(row("a", "r2"), {"frames": frames_file(tmp_path, "a", "r2", 2.0)})])
    assert (tmp_path / "frames" / "_delta_log" / f"{2:020d}.json").read_bytes() == taken
    assert scales(tmp_path) == {"a": 3.0} and not list((tmp_path / "frames" / "_delta_log").glob(".*"))


def test_a_table_of_a_newer_protocol_is_committed_through_delta_rs(tmp_path):
    plain = DeltaTable.create(str(tmp_path / "plain"), pa.schema([("clip_id", pa.string())]))
    append_only = DeltaTable.create(
        str(tmp_path / "append_only"), pa.schema([("clip_id", pa.string())]), configuration={"delta.appendOnly": "true"}
    )
    assert delta.own_commits(plain) and not delta.own_commits(append_only)


def test_a_clips_table_from_before_clips_version_is_read_and_compacted(tmp_path):
    from deltalake.transaction import AddAction

    from enrich.manifest.schema import CLIPS

    older = pa.schema([f for f in CLIPS if f.name != "clips_version"])
    table = delta.create_table(str(tmp_path), "clips", older)
    rows = pa.Table.from_pylist([row("a", "r0"), row("b", "r0")], older)
    pq.write_table(rows, tmp_path / "clips" / "old.parquet")
    size = (tmp_path / "clips" / "old.parquet").stat().st_size
    table.create_write_transaction([AddAction("old.parquet", size, {}, 1, True, "{}")], "append", table.schema())
    publish(tmp_path, "r1", {"b": 1.0})  # b re-enriched: its new row has a clips_version, its old one none
    assert {r["clip_id"]: r["run_id"] for r in read_clips(str(tmp_path)).to_pylist()} == {"a": "r0", "b": "r1"}
    assert compact.compact_clips(str(tmp_path), "r2", at_least=compact.AUTO_FILES + 1) == (1, 1)
    raw = DeltaTable(str(tmp_path / "clips")).to_pyarrow_table()
    assert sorted(zip(raw["clip_id"].to_pylist(), raw["run_id"].to_pylist(), strict=True)) == [("a", "r0"), ("b", "r1")]
