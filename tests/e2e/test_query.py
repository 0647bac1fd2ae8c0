"""`enrich query` and `enrich status`: DuckDB over the manifest's Arrow datasets, checked against
pyarrow reading the same files (tests/e2e/test_s3.py does the same on S3)."""

from __future__ import annotations

import io
import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from enrich.cli import main
from enrich.query import query
from tests.e2e.conftest import read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, fixtures_dir, tiny_depth_model, ray_session):
    import shutil

    clips = tmp_path_factory.mktemp("q-in")
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", clips / "field.mp4")
    shutil.copy(fixtures_dir / "sintel_scene_cuts_10s.mp4", clips / "sintel.mp4")
    (clips / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path_factory.mktemp("q-out") / "out"
    code = main(["run", str(clips), str(out), "--depth-model", str(tiny_depth_model), "--fps", "1", "--quiet"])
    assert code == 1  # broken.mp4
    return out


def test_query_equals_pyarrow(manifest):
    frames = read_table(manifest / "frames")
    got = query(
        str(manifest), "SELECT clip_id, count(*) AS n, max(timestamp_s) AS last FROM frames GROUP BY 1 ORDER BY 1"
    )
    want = frames.group_by("clip_id").aggregate([("frame_index", "count"), ("timestamp_s", "max")]).sort_by("clip_id")
    assert got["clip_id"].to_pylist() == want["clip_id"].to_pylist()
    assert got["n"].to_pylist() == want["frame_index_count"].to_pylist()
    assert got["last"].to_pylist() == want["timestamp_s_max"].to_pylist()
    # struct fields and filters, as a training-set query would use them
    got = query(str(manifest), "SELECT clip_id, frame_index FROM frames WHERE flags.exposure ORDER BY 1, 2")
    mask = pc.struct_field(frames["flags"], "exposure")
    want = frames.filter(pc.fill_null(mask, False)).sort_by([("clip_id", "ascending"), ("frame_index", "ascending")])
    assert got["frame_index"].to_pylist() == want["frame_index"].to_pylist() and got.num_rows > 0
    clips = query(str(manifest), "SELECT * FROM clips ORDER BY clip_id")
    assert clips.to_pylist() == read_table(manifest / "clips").sort_by("clip_id").to_pylist()
    assert query(str(manifest), "SELECT count(*) AS n FROM clips").to_pandas()["n"][0] == 3


def test_compact_keeps_every_query_answer_and_status(manifest, tmp_path, capsys):
    """`enrich compact` on a copy: frames_meta then answers the small-column queries, the same."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(manifest, out)
    sqls = [
        "SELECT clip_id, frame_index, timestamp_s, segment, flags, audit, depth_scale FROM frames ORDER BY 1, 2",
        "SELECT clip_id, count(*) FILTER (flags.motion_blur) AS blurred, avg(audit.sharpness) AS s FROM frames "
        "GROUP BY 1 ORDER BY 1",
    ]
    before = [query(str(out), sql).to_pylist() for sql in sqls]
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert main(["compact", str(out)]) == 0
    line = capsys.readouterr().out
    assert "frames_meta: 2 frames files added" in line, line
    assert (out / "frames_meta" / "_delta_log").is_dir()
    assert [query(str(out), sql).to_pylist() for sql in sqls] == before and before[0]
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out == status


def test_query_command_formats(manifest, tmp_path, capsys):
    sql = "SELECT clip_id, status, error FROM clips ORDER BY clip_id"
    assert main(["query", str(manifest), sql]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["clip_id", "status", "error"] and "(3 rows)" in text
    assert main(["query", str(manifest), sql, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"]
    target = tmp_path / "clips.parquet"
    assert main(["query", str(manifest), "SELECT * FROM frames", "--format", "parquet", "--out", str(target)]) == 0
    assert pq.read_table(target).num_rows == read_table(manifest / "frames").num_rows
    assert main(["query", str(manifest), sql, "--format", "csv", "--out", str(tmp_path / "c.csv")]) == 0
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == '"clip_id","status","error"'
    import pyarrow.csv as pacsv

    assert pacsv.read_csv(io.BytesIO((tmp_path / "c.csv").read_bytes())).num_rows == 3


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELEC nonsense", "query failed: Parser Error"),
        ("SELECT no_such_column FROM frames", "query failed: Binder Error"),
    ],
)
def test_bad_sql_is_one_line_and_exit_2(manifest, capsys, sql, message):
    assert main(["query", str(manifest), sql]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_not_a_manifest(tmp_path, capsys):
    assert main(["query", str(tmp_path), "SELECT 1"]) == 2
    assert main(["status", str(tmp_path)]) == 2
    assert "not an enrich manifest" in capsys.readouterr().err


def test_status(manifest, capsys):
    assert main(["status", str(manifest)]) == 0
    out = capsys.readouterr().out
    n = read_table(manifest / "frames").num_rows
    assert f"3 clips (2 ok, 1 failed), {n} frames" in out
    assert "0 clips were made with another config" in out
    assert "exposure" in out and "flow_inconsistent" in out and "not computed" in out  # no flow in this run
