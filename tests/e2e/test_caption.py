"""Captions end to end: depth and captions in one pass, captions queryable in SQL."""

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
    assert all(r["depth_png"] for r in rows) and all(
        r["caption_model"].startswith("random:qwen3-vl-tiny") for r in rows
    )
    sql = "SELECT clip_id, frame_index, caption.start_s AS s, caption.end_s AS e, caption.text AS text FROM frames"
    assert main(["query", str(out), sql + " WHERE caption IS NOT NULL ORDER BY 1, 3", "--format", "json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    found = found[0] if found and isinstance(found[0], list) else found
    spans = [(r["clip_id"], r["s"], round(r["e"], 3)) for r in found]
    assert spans[:3] == [("sintel.mp4", 0.0, 4.0), ("sintel.mp4", 4.0, 8.0), ("sintel.mp4", 8.0, 10.0)]
    assert [s[:2] for s in spans[3:]] == [("tiny.mp4", 0.0)]
    assert all(isinstance(r["text"], str) for r in found)
    saved = json.loads(next((out / "runs").glob("*/config.json")).read_text())
    assert saved["config"]["caption_prompt"].startswith("These frames") and saved["licences"]["caption"] == "n/a"

    # The prompt is in the config hash: changing it redoes the clips.
    code, stdout, err = run(clips, out, "--stages", "depth,caption", *models, *options, "--caption-prompt", "who?")
    assert code == 0 and "2 clips ok" in stdout, err
