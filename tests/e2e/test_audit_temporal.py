"""Audits, shots and temporal consistency through the whole pipeline, on the fixture clips and on
generated edge cases (one frame, all black), and the report that shows them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from enrich.cli import main
from enrich.manifest.schema import FLAG_NAMES
from enrich.ops import temporal
from enrich.ops.flowpng import decode_flow_png
from tests.e2e.conftest import decode_depth, read_table
from tests.helpers import write_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, fixtures_dir):
    clips = tmp_path_factory.mktemp("audit-in")
    shutil.copy(fixtures_dir / "sintel_scene_cuts_10s.mp4", clips / "sintel.mp4")
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", clips / "tiny.mp4")
    rng = np.random.default_rng(0)
    write_video(clips / "one_frame.mp4", rng.integers(0, 255, (1, 64, 96, 3)).astype(np.uint8))
    write_video(clips / "black.mp4", np.zeros((6, 64, 96, 3), np.uint8))
    return clips


def by_clip(out) -> dict[str, list[dict]]:
    rows = sorted(read_table(out / "frames").to_pylist(), key=lambda r: (r["clip_id"], r["frame_index"]))
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r["clip_id"], []).append(r)
    return grouped


@pytest.fixture(scope="module")
def enriched(catalogue, tmp_path_factory, tiny_depth_model, tiny_raft, ray_session):
    out = tmp_path_factory.mktemp("audit-out") / "out"
    args = ["--stages", "depth,flow", "--depth-model", tiny_depth_model, "--flow-model", f"raft_small:{tiny_raft}"]
    code = main(["run", str(catalogue), str(out), *map(str, args), "--fps", "2", "--max-frames-per-clip", "20",
                 "--flow-updates", "2", "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_every_frame_carries_flags_scores_and_a_thumbnail(enriched):
    clips = by_clip(enriched)
    assert set(clips) == {"sintel.mp4", "tiny.mp4", "one_frame.mp4", "black.mp4"}
    for rows in clips.values():
        for r in rows:
            assert set(r["flags"]) == set(FLAG_NAMES)
            assert r["thumb_jpeg"][:2] == b"\xff\xd8"
            for name in ("motion_blur", "exposure", "low_texture", "close_range", "transparent_reflective"):
                assert r["flags"][name] is not None, name
            assert r["audit"]["near_fraction"] is not None and r["audit"]["sharpness"] is not None
        # forward-backward flow for every frame with a successor, none for the last
        assert all(r["flags"]["flow_inconsistent"] is not None for r in rows[:-1])
        assert rows[-1]["flags"]["flow_inconsistent"] is None and rows[-1]["flow_png"] is None


def test_scene_cuts_split_sintel_into_shots_and_dark_frames_are_flagged(enriched):
    sintel = by_clip(enriched)["sintel.mp4"]
    # At 2 fps: the fade into the black title card (frame 108) and the hard cut at frame 214 (216).
    starts = [r["frame_index"] for prev, r in zip(sintel, sintel[1:], strict=False) if r["segment"] != prev["segment"]]
    assert starts == [108, 216]
    title = [r for r in sintel if 108 <= r["frame_index"] <= 156]
    assert title and all(r["flags"]["exposure"] and r["flags"]["low_texture"] for r in title)
    assert not any(r["flags"]["motion_blur"] for r in title)  # black is not blurred
    assert not sintel[0]["flags"]["exposure"]
    # a shot's first frame has no predecessor to flicker against
    for r in sintel:
        first = r["frame_index"] in (0, 108, 216)
        assert (r["audit"]["flicker"] is None) == first and (r["flags"]["depth_flicker"] is None) == first


def test_stored_depth_is_the_aligned_depth(enriched):
    """The audit's flicker, recomputed from what a reader decodes (scale and offset as stored, flow
    from the PNG), equals the stored figure: the rows carry the aligned depth, not the raw one."""
    for clip in ("sintel.mp4", "tiny.mp4"):
        rows = by_clip(enriched)[clip]
        maps = [temporal.small_map(decode_depth(r)) for r in rows]
        for t in range(1, len(rows)):
            if rows[t]["segment"] != rows[t - 1]["segment"]:
                continue
            flow, valid = decode_flow_png(rows[t - 1]["flow_png"])
            small = temporal.small_flow(np.nan_to_num(flow), valid, maps[0].shape)
            # The commit measured it on the stored depth codes but on the flow before it was stored
            # (to 1/64 px): the same up to that rounding, which shows most on near-static frames
            # (flicker ~1e-3), hence the absolute term.
            expected = pytest.approx(rows[t]["audit"]["flicker"], rel=1e-2, abs=2e-5)
            assert temporal.flicker(maps[t - 1], maps[t], small) == expected


def test_clips_table_has_shots_flicker_and_flag_rates(enriched):
    clips = {r["clip_id"]: r for r in read_table(enriched / "clips").to_pylist()}
    assert clips["sintel.mp4"]["segments"] == 3 and clips["tiny.mp4"]["segments"] == 1
    # (that alignment lowers flicker is shown on known inputs in tests/unit/test_temporal.py: the
    # tiny random model's depth barely changes between frames, so here both figures are close)
    assert clips["sintel.mp4"]["flicker_before"] > 0 and clips["sintel.mp4"]["flicker_after"] > 0
    frames = by_clip(enriched)
    for clip_id, c in clips.items():
        assert c["status"] == "ok"
        for name in FLAG_NAMES:
            known = [r["flags"][name] for r in frames[clip_id] if r["flags"][name] is not None]
            assert c["flag_rates"][name] == (pytest.approx(sum(known) / len(known)) if known else None)
    # edge cases are rows, not errors
    one = clips["one_frame.mp4"]
    assert one["n_frames"] == 1 and one["segments"] == 1 and one["flicker_before"] is None
    assert clips["black.mp4"]["flag_rates"]["exposure"] == 1.0  # every frame flagged


def test_temporal_off_keeps_raw_depth_and_align_only_rescales_it(catalogue, enriched, tmp_path, run, tiny_depth_model):
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(catalogue / "sintel.mp4", clips / "sintel.mp4")
    code, _, err = run(clips, tmp_path / "off", "--depth-model", tiny_depth_model, "--fps", 2,
                       "--max-frames-per-clip", 20, "--temporal", "off")  # fmt: skip
    assert code == 0, err
    raw = by_clip(tmp_path / "off")["sintel.mp4"]
    aligned = by_clip(enriched)["sintel.mp4"]
    assert len(raw) == len(aligned)
    for r, a in zip(raw, aligned, strict=True):
        # Same model, another run (other thread counts: float noise): the aligned frame is the raw
        # frame times a positive scale plus a shift, and each shot starts from its raw values.
        rv, av = decode_depth(r).ravel(), decode_depth(a).ravel()
        span = np.ptp(rv)
        s, b = np.polyfit(rv, av, 1)
        assert s > 0 and np.abs(s * rv + b - av).max() < 1e-3 * np.ptp(av)
        if a["frame_index"] in (0, 108, 216):
            np.testing.assert_allclose(av, rv, atol=1e-3 * span)
        assert r["audit"]["flicker"] == pytest.approx(r["audit"]["flicker_raw"])  # off: nothing changed
    off_clip = read_table(tmp_path / "off" / "clips").to_pylist()[0]
    assert off_clip["flicker_after"] == pytest.approx(off_clip["flicker_before"])


def test_report_shows_flags_clips_and_example_frames(enriched, tmp_path, capsys):
    target = tmp_path / "report.html"
    assert main(["report", str(enriched), "-o", str(target)]) == 0
    page = target.read_text()
    for name in FLAG_NAMES:
        assert name in page
    for clip in ("sintel.mp4", "tiny.mp4", "one_frame.mp4", "black.mp4"):
        assert clip in page
    assert page.count("data:image/jpeg;base64,") >= 2  # exposure examples: thumbnail ...
    assert page.count("data:image/png;base64,") >= 2  # ... beside colourised depth
    assert main(["report", str(enriched)]) == 0 and (enriched / "report.html").exists()  # default place


def test_report_on_something_that_is_not_a_manifest(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not an enrich manifest" in err


def test_bad_temporal_option_fails_fast(run, tmp_path, fixtures_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(fixtures_dir), str(tmp_path / "o"), "--temporal", "wobbly"])
    assert exit_.value.code == 2 and "--temporal" in capsys.readouterr().err
    config = tmp_path / "c.yaml"
    config.write_text("temporal: wobbly\naudit:\n  flicker: 0.2\n")
    code, _, err = run(fixtures_dir, tmp_path / "o", "--config", config)
    assert code == 2 and "--temporal must be one of off, align, smooth" in err and not (tmp_path / "o").exists()


def test_show_renders_frame_depth_and_flow(enriched, catalogue, tmp_path, capsys):
    from PIL import Image

    target = tmp_path / "f.png"
    assert main(["show", str(enriched), "sintel.mp4", "0", "-o", str(target)]) == 0
    img = Image.open(target)
    # 854x480 frame, depth and flow, each scaled to 360 rows, 4 px apart
    assert img.size == (3 * round(854 * 360 / 480) + 8, 360)
    right = np.asarray(img)[:, -100:]
    assert right.std() > 0  # the flow panel is drawn
    # the clip is gone: the stored thumbnail stands in for the frame
    moved = tmp_path / "moved"
    shutil.copytree(enriched, moved)
    shutil.move(catalogue / "tiny.mp4", tmp_path / "tiny.mp4")
    try:
        assert main(["show", str(moved), "tiny.mp4", "0", "-o", str(tmp_path / "t.png")]) == 0
    finally:
        shutil.move(tmp_path / "tiny.mp4", catalogue / "tiny.mp4")
    capsys.readouterr()
    assert main(["show", str(enriched), "nope.mp4", "0", "-o", str(target)]) == 2
    assert main(["show", str(enriched), "sintel.mp4", "1", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "no frames of clip 'nope.mp4'" in err and "has no sampled frame 1" in err


def test_reflective_street_and_close_range_portrait(run, fixtures_dir, tiny_depth_model, tmp_path):
    """What can be checked with random depth weights: the image half of each audit on the real
    footage. The wet night street glints; the indoor portrait does not. The depth half
    (reflection_mismatch, near_fraction) is computed for every frame, but only real weights make
    it meaningful."""
    from enrich.config import AuditConfig

    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(fixtures_dir / "tokyo_walk.mp4", clips / "tokyo.mp4")
    shutil.copy(fixtures_dir / "portrait_with_audio.mp4", clips / "portrait.mp4")
    code, _, err = run(
        clips, tmp_path / "out", "--depth-model", tiny_depth_model, "--fps", 1, "--max-frames-per-clip", 3
    )
    assert code == 0, err
    frames = by_clip(tmp_path / "out")
    threshold = AuditConfig().specular_fraction
    assert all(r["audit"]["specular_fraction"] > threshold for r in frames["tokyo.mp4"])
    assert all(r["audit"]["specular_fraction"] < threshold for r in frames["portrait.mp4"])
    for r in frames["tokyo.mp4"] + frames["portrait.mp4"]:
        assert r["audit"]["reflection_mismatch"] is not None and r["audit"]["near_fraction"] is not None
        assert r["flags"]["transparent_reflective"] is not None and r["flags"]["close_range"] is not None


def test_the_notebook_runs_on_a_manifest(enriched, monkeypatch):
    """notebooks/explore_manifest.ipynb, cell by cell, in one namespace as a kernel would run it,
    pointed at a manifest this module produced."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "explore_manifest.ipynb"
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        source = "".join(cell["source"]).replace('OUTPUT = "../out/quickstart"', f"OUTPUT = {str(enriched)!r}")
        exec(compile(source, f"{notebook.name}[{i}]", "exec"), namespace)
    assert set(namespace["per_clip"].index) == {"sintel.mp4", "tiny.mp4", "one_frame.mp4", "black.mp4"}
    assert namespace["per_clip"].loc["black.mp4", "exposure"] == 1.0
    assert len(namespace["rows"]) == 4 and namespace["clips"]["status"].eq("ok").all()
