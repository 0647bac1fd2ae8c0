from pathlib import Path

from deltalake import DeltaTable

from enrich.catalog import Clip
from enrich.manifest.commit import clips_rows
from enrich.plan import make_plan
from enrich.tracker import ClipTracker

H1, H2 = {"frames": "h1"}, {"frames": "h2"}


def clip(name, size=10, etag="e"):
    return Clip(name, f"/in/{name}", size, etag)


def finished(name, **columns):
    """A clips row as a run of r1 writes it for a clip that went ok."""
    return dict(
        clip_id=name, clip_uri=f"/in/{name}", size_bytes=10, etag="e", status="ok", n_frames=3, run_id="r1", **columns
    )


def state(**status):
    rows = [
        dict(
            clip_id=n,
            clip_uri=f"/in/{n}",
            size_bytes=10,
            etag="e",
            status=s,
            error=None if s == "ok" else "x",
            n_frames=1,
            config_hash="h1",
            hashes={"frames": "h1" if s == "ok" else "!h1"},
            run_id="r0",
            depth_model="m",
        )
        for n, s in status.items()
    ]
    return clips_rows(rows)


def test_plan_reasons():
    previous = state(a="ok", b="ok", c="failed", d="ok")
    clips = [clip("a"), clip("b", size=11), clip("c"), clip("d", etag="x"), clip("e")]
    plan = make_plan(clips, previous, H1)
    assert plan.reasons == {"b": "changed", "c": "failed", "d": "changed", "e": "new"}
    assert plan.skipped == 1
    assert make_plan(clips, previous, H2).reasons["a"] == "config"
    assert len(make_plan(clips, previous, H1, force=True).todo) == 5


def test_failed_clips_are_retried_up_to_the_limit():
    previous = state(a="failed", b="failed", c="failed")
    table = previous.to_pylist()
    for row, attempts in zip(table, [1, 2, 3], strict=True):
        row["attempts"] = attempts
    previous = clips_rows(table)
    clips = [clip("a"), clip("b"), clip("c"), clip("d")]
    plan = make_plan(clips, previous, H1, retry_limit=3)
    assert plan.reasons == {"a": "failed", "b": "failed", "d": "new"}
    assert plan.attempts == {"a": 2, "b": 3, "d": 1}
    assert plan.gave_up == ["c"] and plan.skipped == 0
    assert "1 failed too often" in plan.describe()
    assert [line.split()[0] for line in plan.lines()[1:]] == ["failed", "failed", "new"]
    assert "(attempt 3)" in plan.lines()[2]
    # new content or config, or --force, starts over
    assert make_plan([clip("c", etag="new")], previous, H1).attempts == {"c": 1}
    assert make_plan([clip("c")], previous, H2).attempts == {"c": 1}
    assert make_plan([clip("c")], previous, H1, force=True).reasons == {"c": "forced"}


def test_a_stale_stage_with_a_table_of_its_own_is_redone_alone():
    previous = state(a="ok", b="ok", c="ok", d="failed")
    rows = previous.to_pylist()
    rows[0]["hashes"] = {"frames": "h1", "caption": "p1"}  # a: captioned with prompt p1
    rows[3]["hashes"] = {"frames": "h1", "caption": "!p2"}  # d: its captions failed with this prompt
    previous = clips_rows(rows)
    clips = [clip("a"), clip("b"), clip("c", etag="x"), clip("d")]
    plan = make_plan(clips, previous, {"frames": "h1", "caption": "p2"})
    # a: new prompt; b: never captioned; c: new content, so everything; d: retried, captions only
    assert plan.reasons == {"a": "config", "b": "config", "c": "changed", "d": "failed"}
    assert plan.only == {"a": ("caption",), "b": ("caption",), "d": ("caption",)}
    assert plan.groups(("depth", "caption")) == [
        (("depth", "caption"), True, [clip("c", etag="x")]),
        (("caption",), False, [clip("a"), clip("b"), clip("d")]),
    ]
    assert "3 for caption only" in plan.describe() and "(caption only)" in plan.lines()[1]
    # the same prompt: a is up to date; a new frames hash redoes the clip whole
    assert make_plan([clip("a")], previous, {"frames": "h1", "caption": "p1"}).todo == []
    assert make_plan([clip("a")], previous, {"frames": "h2", "caption": "p1"}).only == {}
    # captions not asked for: the frames decide, and the captions are kept as they are
    assert make_plan([clip("a")], previous, H1).todo == []


def test_a_publish_supersedes_its_clips_rows_without_rewriting_and_compaction_drops_the_old_ones(tmp_path):
    from enrich.manifest import compact
    from enrich.manifest.commit import read_clips
    from enrich.manifest.publish import Finished, Publisher
    from enrich.query import query

    out = str(tmp_path)
    publisher = Publisher(out, "r1")
    publisher.publish([Finished(r) for r in state(a="ok", b="failed").to_pylist()])
    publisher.publish([Finished(r) for r in state(c="ok", d="ok").to_pylist()])
    first = {Path(uri).name for uri in DeltaTable(str(tmp_path / "clips")).file_uris()}
    versions = Publisher(out, "r2").publish([Finished(finished("b", config_hash="h1", depth_model="m2"))])
    assert versions["clips"] == 3  # created (version 0), three commits

    def current() -> dict[str, dict]:
        rows = {r["clip_id"]: r for r in read_clips(out).to_pylist()}
        table = query(out, "SELECT * FROM clips")
        assert table.num_rows == len(rows) and rows == {r["clip_id"]: r for r in table.to_pylist()}  # SQL agrees
        return rows

    rows = current()
    assert sorted(rows) == ["a", "b", "c", "d"]
    assert rows["b"]["status"] == "ok" and rows["b"]["run_id"] == "r1" and rows["b"]["depth_model"] == "m2"
    assert rows["b"]["clips_version"] == 3 and rows["a"]["clips_version"] == 1
    assert rows["a"]["run_id"] == "r0" and rows["a"]["status"] == "ok"
    raw = DeltaTable(str(tmp_path / "clips"))
    assert raw.to_pyarrow_table()["clip_id"].to_pylist().count("b") == 2  # b's older row is still there ...
    assert first < {Path(uri).name for uri in raw.file_uris()}  # ... as no file was rewritten

    assert compact.compact_clips(out, "r3", at_least=compact.AUTO_FILES + 1) == (1, 1)  # as a run's end does
    assert current() == rows
    raw = DeltaTable(str(tmp_path / "clips"))
    assert sorted(raw.to_pyarrow_table()["clip_id"].to_pylist()) == ["a", "b", "c", "d"]  # one row per clip
    live = {Path(uri).name for uri in raw.file_uris()}
    assert len(first - live) == 1 and (first - live).pop().startswith("r1-00001-")  # only a and b's old file
    assert compact.compact_clips(out, "r4", at_least=compact.AUTO_FILES + 1) == (0, 0)  # nothing more to do


def test_a_clips_table_from_an_older_version_gains_the_new_columns(tmp_path):
    """Version 1 wrote no flow_model / pose_model: upgrading and reading it must still work."""
    import pyarrow.parquet as pq

    from enrich.manifest import migrate
    from enrich.manifest.commit import read_clips

    old = state(a="ok", b="ok").drop_columns(["flow_model", "pose_model"])
    (tmp_path / "clips").mkdir()
    pq.write_table(old, tmp_path / "clips" / "clips.parquet")
    assert migrate.needed(str(tmp_path))
    assert migrate.upgrade(str(tmp_path), "r2") == 2
    previous = read_clips(str(tmp_path))
    assert previous.column("flow_model").null_count == 2
    assert {r["clip_id"]: r["depth_model"] for r in previous.to_pylist()} == {"a": "m", "b": "m"}
    assert not (tmp_path / "clips" / "clips.parquet").exists() and not migrate.needed(str(tmp_path))


def summary(clip_id, ok, failed, expected, error=None):
    return dict(
        clip_id=clip_id,
        clip_uri="u",
        rows_ok=ok,
        rows_failed=failed,
        expected=expected,
        error=error,
        source_frames=10,
        fps=1.0,
        duration_s=10.0,
        width=4,
        height=3,
    )


def test_tracker_finishes_clip_when_all_rows_arrive_in_any_order():
    t = ClipTracker()
    assert t.add(summary("a", 4, 0, 10)) is None
    assert t.add(summary("b", 2, 0, 2)).ok
    done = t.add(summary("a", 6, 0, 10))
    assert done.ok and done.rows_ok == 10 and t.frames_ok == 12


def test_tracker_partial_decode_failure_uses_smallest_claim():
    # 16 frames decoded of 40 planned, then the decoder failed: the error row claims 17 rows.
    t = ClipTracker()
    assert t.add(summary("a", 0, 1, 17, error="decode: corrupt")) is None
    assert t.add(summary("a", 8, 0, 40)) is None
    done = t.add(summary("a", 8, 0, 40))
    assert done is not None and not done.ok and done.error == "decode: corrupt"


def test_tracker_reports_unfinished():
    t = ClipTracker()
    t.add(summary("a", 1, 0, 2))
    assert t.unfinished(["a", "b"]) == ["a", "b"]
