import numpy as np
import pytest

from enrich.ops.sampling import sample_indices


def test_every_frame_when_no_fps():
    assert sample_indices(np.arange(5) / 24, None, None).tolist() == [0, 1, 2, 3, 4]


def test_fps_keeps_first_frame_of_each_bin():
    ts = np.arange(48) / 24  # 2 s at 24 fps
    assert sample_indices(ts, 2, None).tolist() == [0, 12, 24, 36]
    assert sample_indices(ts, 1, None).tolist() == [0, 24]


def test_float32_times_sample_the_same_frames_as_exact_ones():
    """decord reports times in float32, torchcodec in float64: frames on a bin's edge (frame 400 of
    24 fps at 3 fps is at 16.666... s) must land in the same bin, over an hour of footage."""
    for source, fps in [(24, 3), (30, 2), (30000 / 1001, 1), (60, 30), (25, 5)]:
        exact = np.arange(int(3600 * source)) / source
        rounded = exact.astype(np.float32).astype(np.float64)
        assert (rounded != exact).any()
        expected = sample_indices(exact, fps, None)
        np.testing.assert_array_equal(sample_indices(rounded, fps, None), expected, err_msg=str((source, fps)))
        assert len(expected) == pytest.approx(3600 * fps, abs=1)


def test_fps_higher_than_stream_keeps_every_frame():
    ts = np.arange(4) / 2.0
    assert sample_indices(ts, 30, None).tolist() == [0, 1, 2, 3]


def test_variable_frame_rate_is_sampled_in_time():
    ts = np.array([0.0, 0.1, 0.2, 0.9, 1.05, 1.1, 2.5, 2.6])
    assert sample_indices(ts, 1, None).tolist() == [0, 4, 6]


def test_max_frames_keeps_the_first():
    assert sample_indices(np.arange(100) / 10, 1, 3).tolist() == [0, 10, 20]


def test_empty():
    assert sample_indices(np.array([]), 1, None).tolist() == []


def test_caption_windows_start_on_their_first_sampled_frame_and_spread_their_frames():
    from enrich.ops.sampling import windows

    ts = np.arange(0, 12, 1 / 30)  # 12 s at 30 fps
    sampled = sample_indices(ts, 1.0, None)  # 0, 30, 60, ...
    found = windows(ts, sampled, 5.0, 4, end_s=12.0)
    assert [(w.row, w.start_s, w.end_s) for w in found] == [(0, 0.0, 5.0), (5, 5.0, 10.0), (10, 10.0, 12.0)]
    for w in found:
        times = ts[w.frames]
        assert len(w.frames) == 4 and np.all((times >= w.start_s) & (times < w.end_s))
        assert np.all(np.diff(times) > (w.end_s - w.start_s) / 8)  # spread, not bunched


def test_caption_windows_with_few_frames_and_sparse_sampling():
    from enrich.ops.sampling import windows

    ts = np.array([0.0, 0.5, 7.0, 7.5])  # a gap: no frame between 0.5 s and 7 s
    found = windows(ts, np.arange(4), 5.0, 4, end_s=8.0)
    assert [(w.row, w.start_s) for w in found] == [(0, 0.0), (2, 5.0)]
    assert found[0].frames.tolist() == [0, 1] and found[1].frames.tolist() == [2, 3]  # fewer than k: each once
    assert windows(ts, np.zeros(0, dtype=np.int64), 5.0, 4, end_s=8.0) == []


def test_caption_windows_within_shots_restart_at_each_cut_and_never_cross_one():
    from enrich.ops.sampling import windows

    ts = np.arange(0, 12, 1 / 30)
    sampled = sample_indices(ts, 1.0, None)  # a frame a second
    shots = np.array([0] * 7 + [1] * 5)  # a cut before the frame at 7 s
    found = windows(ts, sampled, 5.0, 4, end_s=12.0, shots=shots)
    assert [(w.row, w.start_s, w.end_s) for w in found] == [(0, 0.0, 5.0), (5, 5.0, 7.0), (7, 7.0, 12.0)]
    assert all(ts[w.frames].max() < w.end_s for w in found)
    one_shot = windows(ts, sampled, 5.0, 4, end_s=12.0, shots=np.zeros(12))
    assert [(w.row, w.frames.tolist()) for w in one_shot] == [
        (w.row, w.frames.tolist()) for w in windows(ts, sampled, 5.0, 4, end_s=12.0)
    ]
