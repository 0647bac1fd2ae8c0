"""The decode stage on real fixture clips and every kind of bad file, without Ray."""

import numpy as np
import pytest

from enrich.stages.decode import Decode
from tests.helpers import BAD_CLIPS


def rows(stage, path, clip_id="c"):
    batches = list(stage.decode_clip(clip_id, str(path)))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0] if k != "frame"}, batches


@pytest.mark.parametrize(
    "name, size",
    [
        ("tiny_2fps.mp4", (180, 320)),
        ("portrait_with_audio.mp4", (640, 480)),  # portrait, with an audio track to ignore
        ("davis_rollercoaster.mp4", (540, 960)),  # MPEG-4 Part 2, not H.264
        ("one_fps_stills.mp4", (756, 1008)),
    ],
)
def test_fixture_clips_decode_at_sampled_times(fixtures_dir, name, size):
    table, batches = rows(Decode(fps=1.0, max_frames=5, chunk=2), fixtures_dir / name)
    n = len(table["frame_index"])
    assert 1 <= n <= 5
    assert all(b["frame"].shape[1:] == (*size, 3) and b["frame"].dtype == np.uint8 for b in batches)
    assert (table["expected"] == n).all() and all(e == "" for e in table["error"])
    assert (np.diff(table["timestamp_s"]) >= 0.99).all()  # one per second
    assert (table["width"] == size[1]).all() and (table["height"] == size[0]).all()


def test_chunks_bound_memory(fixtures_dir):
    _, batches = rows(Decode(fps=None, max_frames=20, chunk=8), fixtures_dir / "sintel_scene_cuts_10s.mp4")
    assert [len(b["frame_index"]) for b in batches] == [8, 8, 4]


def test_frames_equal_decord(fixtures_dir):
    import decord

    table, batches = rows(Decode(fps=2.0, max_frames=3), fixtures_dir / "tokyo_walk.mp4")
    reader = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4"))
    expected = reader.get_batch(table["frame_index"].tolist()).asnumpy()
    np.testing.assert_array_equal(np.concatenate([b["frame"] for b in batches]), expected)


@pytest.mark.parametrize("name", sorted(BAD_CLIPS))
def test_bad_files_become_one_error_row(bad_clips, name):
    table, _ = rows(Decode(fps=2.0, max_frames=None), bad_clips / name)
    assert len(table["error"]) == 1 and table["error"][0].startswith(BAD_CLIPS[name])
    assert table["expected"][0] == 1


def test_failure_part_way_claims_rows_already_sent(bad_clips):
    table, batches = rows(Decode(fps=None, max_frames=None, chunk=8), bad_clips / "corrupt.mp4")
    good = [e == "" for e in table["error"]]
    assert sum(good) > 0, "expected some frames before the corrupt region"
    assert table["expected"][-1] == sum(good) + 1 and table["error"][-1].startswith("decode: corrupt")


def test_missing_local_file_is_a_read_error(tmp_path):
    table, _ = rows(Decode(fps=1.0, max_frames=None), tmp_path / "gone.mp4")
    assert table["error"][0].startswith("read: FileNotFoundError")
