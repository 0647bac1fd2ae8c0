"""The decode stage on real fixture clips and every kind of bad file, with both decoders, without Ray."""

import numpy as np
import pytest

from enrich.errors import UsageError
from enrich.ops import video
from enrich.ops.sampling import sample_indices
from enrich.stages.decode import Decode
from tests.helpers import BAD_CLIPS, gop_video, needs_ffmpeg_libraries

DECODERS = pytest.mark.parametrize("decoder", ["decord", pytest.param("torchcodec", marks=needs_ffmpeg_libraries)])


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
@DECODERS
def test_fixture_clips_decode_at_sampled_times(fixtures_dir, name, size, decoder):
    table, batches = rows(Decode(fps=1.0, max_frames=5, chunk=2, decoder=decoder), fixtures_dir / name)
    n = len(table["frame_index"])
    assert 1 <= n <= 5
    assert all(b["frame"].shape[1:] == (*size, 3) and b["frame"].dtype == np.uint8 for b in batches)
    assert (table["expected"] == n).all() and all(e == "" for e in table["error"])
    assert (np.diff(table["timestamp_s"]) >= 0.99).all()  # one per second
    assert (table["width"] == size[1]).all() and (table["height"] == size[0]).all()


@DECODERS
def test_chunks_bound_memory(fixtures_dir, decoder):
    stage = Decode(fps=None, max_frames=20, chunk=8, decoder=decoder)
    _, batches = rows(stage, fixtures_dir / "sintel_scene_cuts_10s.mp4")
    assert [len(b["frame_index"]) for b in batches] == [8, 8, 4]


@DECODERS
def test_frames_equal_decord(fixtures_dir, decoder):
    import decord

    table, batches = rows(Decode(fps=2.0, max_frames=3, decoder=decoder), fixtures_dir / "tokyo_walk.mp4")
    reader = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4"))
    expected = reader.get_batch(table["frame_index"].tolist()).asnumpy()
    np.testing.assert_array_equal(np.concatenate([b["frame"] for b in batches]), expected)


@DECODERS
@pytest.mark.parametrize("name", sorted(BAD_CLIPS))
def test_bad_files_become_one_error_row(bad_clips, name, decoder):
    table, _ = rows(Decode(fps=2.0, max_frames=None, decoder=decoder), bad_clips / name)
    assert len(table["error"]) == 1 and table["error"][0].startswith(BAD_CLIPS[name])
    assert table["expected"][0] == 1


@DECODERS
def test_failure_part_way_claims_rows_already_sent(bad_clips, decoder):
    table, batches = rows(Decode(fps=None, max_frames=None, chunk=8, decoder=decoder), bad_clips / "corrupt.mp4")
    good = [e == "" for e in table["error"]]
    assert sum(good) > 0, "expected some frames before the corrupt region"
    assert table["expected"][-1] == sum(good) + 1 and table["error"][-1].startswith("decode: corrupt")


@DECODERS
def test_missing_local_file_is_a_read_error(tmp_path, decoder):
    table, _ = rows(Decode(fps=1.0, max_frames=None, decoder=decoder), tmp_path / "gone.mp4")
    assert table["error"][0].startswith("read: FileNotFoundError")


def decoded(path, decoder, fps, max_frames=None, chunk=3):
    clip = video.open_clip(str(path), decoder)
    indices = sample_indices(clip.timestamps, fps, max_frames)
    chunks = list(clip.chunks(indices, chunk))
    return clip, indices, np.concatenate([c.frames for c in chunks]), np.concatenate([c.timestamps for c in chunks])


@needs_ffmpeg_libraries
@pytest.mark.parametrize("fps, max_frames", [(None, 30), (3.0, None)])
def test_decoders_agree_bit_for_bit_on_every_fixture(fixtures_dir, fps, max_frames):
    """Same stream properties, timestamps, sampled frames and RGB, so the decoder is not in the config hash."""
    for path in sorted(fixtures_dir.glob("*.mp4")):
        a_clip, a_indices, a_frames, a_times = decoded(path, "decord", fps, max_frames)
        b_clip, b_indices, b_frames, b_times = decoded(path, "torchcodec", fps, max_frames)
        assert b_clip.info.source_frames == a_clip.info.source_frames, path.name
        assert (b_clip.info.width, b_clip.info.height) == (a_clip.info.width, a_clip.info.height), path.name
        assert b_clip.info.fps == pytest.approx(a_clip.info.fps, rel=1e-6), path.name
        assert b_clip.info.duration_s == pytest.approx(a_clip.info.duration_s, abs=1e-3), path.name
        np.testing.assert_allclose(b_clip.timestamps, a_clip.timestamps, atol=1e-5, err_msg=path.name)
        np.testing.assert_array_equal(b_indices, a_indices, err_msg=path.name)
        np.testing.assert_array_equal(b_frames, a_frames, err_msg=path.name)
        assert np.ptp(a_frames.astype(np.int16)) > 50, path.name  # real pictures, not blank frames


@DECODERS
def test_sparse_sampling_across_keyframes_gets_the_right_frames(tmp_path, decoder):
    """A clip with a keyframe every 10 frames, sampled at 1 frame in 15, so that a seek lands between
    samples: each frame carries its own index as a grey level, and decodes to it."""
    path = gop_video(tmp_path / "gop.mp4", n=90, keyframe_every=10)
    clip, indices, frames, times = decoded(path, decoder, fps=2.0)  # 30 fps: every 15th frame
    np.testing.assert_array_equal(indices, np.arange(0, 90, 15))
    levels = frames[:, 8:-8, 8:-8].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(levels, indices * 2 + 40, atol=2)
    np.testing.assert_allclose(times, indices / 30, atol=1e-6)


@needs_ffmpeg_libraries
def test_torchcodec_check_passes_here_and_names_the_fix_when_it_cannot_load(tmp_path, monkeypatch):
    video.check_decoder("torchcodec")  # installed by the test extra, with FFmpeg's libraries
    broken = tmp_path / "site" / "torchcodec"  # a torchcodec whose native libraries are missing
    (broken / "decoders").mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('Could not load libtorchcodec: libavutil.so not found')\n")
    (broken / "decoders" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    with pytest.raises(UsageError, match=r"--decoder torchcodec cannot load \(RuntimeError: Could not load.*apt-get"):
        video.check_decoder("torchcodec")
    video.check_decoder("decord")  # needs nothing beyond the core install
