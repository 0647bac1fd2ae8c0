"""Captions end to end: depth and captions in one pass, captions queryable in SQL, and a new prompt
redoing the captions alone."""

from __future__ import annotations

import json
import shutil

import pytest

from enrich.cli import main
from tests.e2e.conftest import read_table

pytestmark = pytest.mark.slow


def test_depth_and_captions_in_one_pass_queryable_in_sql(run, fixtures_dir, tmp_path, capsys):
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(fixtures_dir / "sintel_scene_cuts_10s.mp4", clips / "sintel.mp4")
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", clips / "tiny.mp4")
    out = tmp_path / "out"
    models = ["--depth-model", "random:depth-anything-v2-small", "--caption-model", "random:qwen3-vl-tiny"]
    options = ["--caption-window", 4, "--caption-frames", 3, "--caption-max-new-tokens", 8, "--fps", 1]
    code, _, err = run(clips, out, "--stages", "depth,caption", *models, *options)
    assert code == 0, err
    rows = read_table(out / "frames").to_pylist()
    assert rows and all(r["depth_png"] for r in rows) and "caption_model" not in rows[0]
    sql = "SELECT clip_id, frame_index, caption_start_s AS s, caption_end_s AS e, caption, caption_model FROM captions"
    found = query_json(capsys, out, sql + " ORDER BY 1, 3")
    # Windows follow the shots the commit found (`segment`): each shot's first frame starts a window,
    # a window holds frames of one shot, and within a shot windows are --caption-window s long.
    segments = [(r["clip_id"], r["timestamp_s"], r["segment"]) for r in rows]
    first: dict[tuple, float] = {}
    for c, t, s in segments:
        first[(c, s)] = min(t, first.get((c, s), t))
    shot_starts = {(c, t) for (c, _), t in first.items()}
    assert len({(c, s) for c, _, s in segments if c == "sintel.mp4"}) >= 2, "the fixture has scene cuts"
    assert shot_starts <= {(r["clip_id"], r["s"]) for r in found}
    for r in found:
        inside = {s for c, t, s in segments if c == r["clip_id"] and r["s"] <= t < r["e"]}
        assert len(inside) == 1 and r["e"] - r["s"] <= 4.0 + 1e-6, r
    assert [r["s"] for r in found if r["clip_id"] == "tiny.mp4"] == [0.0]
    assert all(isinstance(r["caption"], str) and r["caption_model"].startswith("random:qwen3-vl-tiny") for r in found)
    saved = json.loads(next((out / "runs").glob("*/config.json")).read_text())
    assert saved["config"]["caption_prompt"].startswith("These frames") and saved["licences"]["caption"] == "n/a"

    # A new prompt redoes the captions alone: the frames files are not touched.
    frames_before = {p: p.read_bytes() for p in (out / "frames").rglob("*.parquet")}
    hashes_before = {r["clip_id"]: r["hashes"] for r in read_table(out / "clips").to_pylist()}
    new_prompt = [*options, "--caption-prompt", "who?"]
    code, stdout, err = run(clips, out, "--stages", "depth,caption", *models, *new_prompt, "--plan")
    assert code == 0 and "2 to process (2 config), 2 for caption only" in stdout, stdout + err
    lines = stdout.splitlines()
    graph = lines.index("operators for the 2 clips redone for caption alone, sized for this machine:")
    assert [line.split()[0] for line in lines[graph + 1 :]] == ["decode", "caption", "write"]
    code, stdout, err = run(clips, out, "--stages", "depth,caption", *models, *new_prompt)
    assert code == 0 and "2 clips ok" in stdout and "2 of them redone for caption alone" in stdout, stdout + err
    assert "loading 1 model (caption) for 2 clips (caption only)" in err
    assert {p: p.read_bytes() for p in (out / "frames").rglob("*.parquet")} == frames_before
    clips_rows = read_table(out / "clips").to_pylist()
    for r in clips_rows:
        assert r["status"] == "ok" and r["n_frames"] > 0 and r["depth_model"].startswith("random:depth")
        assert r["hashes"]["frames"] == hashes_before[r["clip_id"]]["frames"]
        assert r["hashes"]["caption"] != hashes_before[r["clip_id"]]["caption"]
    again = query_json(capsys, out, sql + " ORDER BY 1, 3")
    assert [(r["clip_id"], r["s"]) for r in again] == [(r["clip_id"], r["s"]) for r in found]
    assert {r["run_id"] for r in read_table(out / "captions").to_pylist()} == {clips_rows[0]["run_id"]}

    # Depth alone, with the same settings: up to date, and the captions are kept.
    code, stdout, err = run(clips, out, "--stages", "depth", *models[:2], "--fps", 1)
    assert code == 0 and "0 clips ok, 0 failed, 2 up to date" in stdout, stdout + err
    assert len(query_json(capsys, out, sql)) == len(found)
    assert main(["status", str(out)]) == 0  # up to date for that run's parts, though their config_hash differs
    assert "0 clips were made with another config" in capsys.readouterr().out


def query_json(capsys, out, sql: str) -> list[dict]:
    capsys.readouterr()
    assert main(["query", str(out), sql, "--format", "json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
