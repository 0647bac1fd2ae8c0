"""Temporal consistency and cut detection on synthetic sequences with known answers."""

import json

import numpy as np
import pytest

from enrich.ops import temporal


def scene(h=48, w=72, seed=0):
    """A smooth disparity field with some structure (a slope and two blobs)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    d = 1.0 + ys / h
    for _ in range(2):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        d += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 60.0)
    return d.astype(np.float32)


DRIFT = [(1.0, 0.0), (1.3, 0.2), (0.8, -0.1), (1.6, 0.5), (0.7, 0.3), (1.1, -0.4)]


def test_injected_scale_drift_comes_back_flat():
    base = scene()
    maps = [s * base + b for s, b in DRIFT]
    c = temporal.make_consistent(maps, [None] * len(maps), np.zeros(len(maps), np.int32), "align")
    for t, m in enumerate(maps):
        np.testing.assert_allclose(c.scale[t] * m + c.shift[t], base, atol=1e-3)
    assert np.nanmax(c.flicker_after) < 1e-3
    assert np.nanmin(c.flicker_before[1:]) > 0.05  # the drift was there before


def test_off_leaves_frames_alone_but_measures_flicker():
    base = scene()
    maps = [s * base + b for s, b in DRIFT]
    c = temporal.make_consistent(maps, [None] * len(maps), np.zeros(len(maps), np.int32), "off")
    assert np.all(c.scale == 1) and np.all(c.shift == 0)
    np.testing.assert_allclose(c.flicker_after, c.flicker_before, equal_nan=True)


def test_alignment_follows_the_flow_on_a_moving_scene():
    big = scene(48, 120, seed=3)
    step = 4  # px per frame, rightwards: pixel p in frame t is at p + (4, 0) in frame t+1
    frames = [big[:, 40 - step * t : 112 - step * t] for t in range(5)]  # camera pans left
    maps = [s * f + b for (s, b), f in zip(DRIFT, frames, strict=False)]
    flows = [np.dstack([np.full(f.shape, step, np.float32), np.zeros(f.shape, np.float32)]) for f in frames]
    flows[-1] = None
    seg = np.zeros(5, np.int32)
    with_flow = temporal.make_consistent(maps, flows, seg, "align")
    for t in range(5):
        np.testing.assert_allclose(with_flow.scale[t] * maps[t] + with_flow.shift[t], frames[t], atol=2e-2)
    without = temporal.make_consistent(maps, [None] * 5, seg, "align")
    assert np.nanmean(with_flow.flicker_after) < np.nanmean(without.flicker_after)


def test_each_shot_starts_from_its_own_raw_values():
    base, other = scene(seed=1), scene(seed=2)
    maps = [base, 2 * base + 1, 3 * other, 0.5 * other]
    c = temporal.make_consistent(maps, [None] * 4, np.array([0, 0, 1, 1], np.int32), "align")
    assert (c.scale[2], c.shift[2]) == (1.0, 0.0)  # reset at the cut, no alignment across it
    np.testing.assert_allclose(c.scale[3] * maps[3] + c.shift[3], maps[2], atol=1e-3)
    assert np.isnan(c.flicker_after[2])  # no predecessor within its shot


def test_smooth_filters_what_alignment_cannot_explain():
    base = scene()
    rng = np.random.default_rng(0)
    # Frames whose content changes (noise) so alignment leaves per-frame jitter in the median.
    maps = [base + rng.normal(0, 0.3) + rng.normal(0, 0.05, base.shape).astype(np.float32) for _ in range(12)]
    seg = np.zeros(12, np.int32)
    medians = {}
    for mode in ("off", "align", "smooth"):
        c = temporal.make_consistent(maps, [None] * 12, seg, mode, sigma=2.0)
        medians[mode] = [np.median(c.scale[t] * m + c.shift[t]) for t, m in enumerate(maps)]
    jitter = {mode: np.std(np.diff(m)) for mode, m in medians.items()}
    assert jitter["smooth"] < 0.5 * jitter["align"] and jitter["align"] < jitter["off"]


def test_noise_does_not_flatten_the_depth_along_a_long_shot():
    """Chained ordinary least squares would shrink the scale by its noise share at every frame."""
    from scipy import ndimage

    base = scene()
    rng = np.random.default_rng(1)

    def noise():  # smooth errors, as a model makes them (pixel noise would be blurred away)
        n = ndimage.gaussian_filter(rng.normal(0, 1, base.shape), 3)
        return (n / n.std() * 0.3 * base.std()).astype(np.float32)

    maps = [base + noise() for _ in range(60)]
    c = temporal.make_consistent(maps, [None] * 60, np.zeros(60, np.int32), "align")
    assert 0.6 < c.scale.min() and c.scale.max() < 1.6  # ordinary least squares: 0.15 by frame 59


def test_commit_rewrites_scale_and_offset_so_decoded_depth_is_aligned(tmp_path):
    """A clip staged as the pipeline stages it, with injected drift, in parts out of order, through
    the commit and its clip-level step: decoding the published rows with their stored scale and
    offset gives the first frame's values for every frame."""
    import pyarrow.parquet as pq
    from PIL import Image

    from enrich.manifest.commit import write_clip
    from enrich.manifest.schema import FRAMES
    from enrich.ops.quantize import decode_png16, dequantize
    from enrich.stages.temporal import FinishClip
    from tests.helpers import stage_clip

    base = np.kron(scene(48, 72), np.ones((4, 4), np.float32))  # 192 x 288
    picture = np.asarray(Image.fromarray((base / base.max() * 255).astype(np.uint8)).convert("RGB"))
    frames = [{"depth": s * base + b, "thumb": picture, "flags": {"exposure": False}, "audit": {"sharpness": 1.0}}
              for s, b in DRIFT]  # fmt: skip
    staging, output = tmp_path / "staging", tmp_path / "out"
    stage_clip(staging, "c", frames, part_size=4)
    rows, figures, files = write_clip(str(output), str(staging), "c", "r1", True, FinishClip())
    table = pq.read_table(output / "frames" / files["frames"]["path"])
    assert json.loads(files["frames"]["stats"])["numRecords"] == rows
    assert rows == len(DRIFT) and table.schema == FRAMES and not any(staging.iterdir())
    out = table.to_pylist()
    assert [r["frame_index"] for r in out] == list(range(len(DRIFT)))
    first = dequantize(decode_png16(out[0]["depth_png"]), out[0]["depth_scale"], out[0]["depth_offset"])
    np.testing.assert_allclose(first, base, atol=1e-4 * np.ptp(base))  # the first frame keeps its raw values
    for r in out:
        decoded = dequantize(decode_png16(r["depth_png"]), r["depth_scale"], r["depth_offset"])
        np.testing.assert_allclose(decoded, base, atol=2e-3 * np.ptp(base))
        assert r["segment"] == 0 and r["flags"]["exposure"] is False and r["audit"]["sharpness"] == 1.0
    assert figures["segments"] == 1 and figures["flicker_after"] < 1e-3 < 0.05 < figures["flicker_before"]
    assert figures["flag_rates"]["exposure"] == 0.0 and figures["flag_rates"]["depth_flicker"] == 0.0
    assert out[0]["flags"]["depth_flicker"] is None and out[1]["flags"]["depth_flicker"] is False


def test_fit_affine_ignores_outliers_and_refuses_degenerate_input():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 2000)
    y = 2.5 * x - 0.7
    y[:200] += rng.uniform(5, 10, 200)  # 10% gross outliers
    s, b = temporal.fit_affine(x, y)
    assert s == pytest.approx(2.5, abs=1e-6) and b == pytest.approx(-0.7, abs=1e-6)
    assert temporal.fit_affine(np.ones(100), np.arange(100.0)) is None  # constant source
    assert temporal.fit_affine(x, -y) is None  # order would flip
    assert temporal.fit_affine(x[:5], y[:5]) is None  # too few pixels


def _textured(seed, shift=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(20, 60, (9, 16, 1)).repeat(40, 0).repeat(40, 1)  # dark blocks, same palette
    return np.roll(np.repeat(base, 3, axis=2), shift, axis=1).astype(np.uint8)


def test_a_cut_between_two_dark_shots_of_one_palette_is_found():
    # Sintel's cut at frame 214 is like this: two dark shots whose colour histograms nearly agree.
    frames = [_textured(1, s) for s in range(0, 12, 2)] + [_textured(2, s) for s in range(0, 12, 2)]
    segments, distance = temporal.segments_from_cuts([temporal.signature(f) for f in frames], 0.15)
    assert segments.tolist() == [0] * 6 + [1] * 6
    assert np.isnan(distance[0]) and distance[6] > 0.3 and np.nanmax(np.delete(distance, 6)) < 0.1


def test_flat_frames_fall_back_to_colour_and_fades_are_not_cuts():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 200
    fade = [np.full((8, 8, 3), v, np.uint8) for v in (60, 55, 50, 45, 40)]  # a slow fade to dark
    thumbs = [red, red, red, blue, blue, *fade]
    segments, _ = temporal.segments_from_cuts([temporal.signature(t) for t in thumbs], 0.15)
    assert segments.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]


def test_sparse_fast_motion_is_not_a_cut_every_frame():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (36, 64, 3)).astype(np.uint8) for _ in range(10)]  # all different
    segments, distance = temporal.segments_from_cuts([temporal.signature(f) for f in frames], 0.15)
    assert np.nanmin(distance) > 0.15  # every step changes a lot ...
    assert segments.max() == 0  # ... so no single step stands out as a cut


def test_small_map_keeps_holes_without_bleeding():
    m = np.ones((200, 300), np.float32)
    m[:100, :150] = np.nan
    small = temporal.small_map(m, 30)
    assert small.shape == (20, 30)
    assert np.isnan(small[:9, :14]).all()
    np.testing.assert_allclose(small[11:, :], 1.0)
