import pytest

from enrich.config import build, load_file
from enrich.errors import UsageError
from enrich.stages.depth import DEFAULT_MODEL as DEFAULT_DEPTH_MODEL


def test_defaults():
    cfg = build({"input": "in", "output": "out"})
    assert cfg.depth.model == DEFAULT_DEPTH_MODEL and cfg.fps is None and cfg.depth.precision == "auto"


def test_yaml_flat_and_nested_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "fps: 2\nmax-frames-per-clip: 5\ndepth:\n  batch_size: 8\n  model: random:depth-anything-v2-small\n"
    )
    values = load_file(str(path))
    cfg = build({**values, "input": "i", "output": "o"})
    assert cfg.fps == 2 and cfg.max_frames_per_clip == 5 and cfg.depth.batch_size == 8


def test_toml_and_flags_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('fps = 2\ndepth_model = "a"\n')
    values = load_file(str(path))
    values.update(fps=5.0)
    cfg = build({**values, "input": "i", "output": "o"})
    assert cfg.fps == 5.0 and cfg.depth.model == "a"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"fps": 0}, "--fps must be > 0"),
        ({"max_frames_per_clip": 1.5}, "whole number"),
        ({"depth_precision": "fp8"}, "--depth-precision must be one of"),
        ({"stages": ["flow"], "flow_precision": "fp16"}, "--flow-precision must be one of auto, fp32, bf16.*overflow"),
        ({"depth_gpus": -1}, "--depth-gpus must be >= 0"),
        ({"depth_batch_size": "x"}, "must be a finite number"),
        ({"fps": float("inf")}, "--fps must be a finite number"),
        ({"decoder": "ffmpeg"}, "--decoder must be one of decord, torchcodec"),
    ],
)
def test_bad_values(values, message):
    with pytest.raises(UsageError, match=message):
        build({"input": "i", "output": "o", **values})


def test_unknown_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fsp: 2\n")
    with pytest.raises(UsageError, match="unknown config key 'fsp'"):
        load_file(str(path))


def test_unparsable_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("fps = = 2\n")
    with pytest.raises(UsageError, match="cannot parse config"):
        load_file(str(path))


def test_output_hash_tracks_what_changes_rows():
    ids = {"depth": "m@1", "flow": "raft@1", "pose": "p@1"}
    base = build({"input": "i", "output": "o"})
    same = build({"input": "other", "output": "o2", "depth_batch_size": 32, "depth_pool_size": 3})
    assert base.output_hash(ids) == same.output_hash(ids)
    # the decoders give the same frames (tests/stages/test_decode.py)
    assert base.output_hash(ids) == build({"input": "i", "output": "o", "decoder": "torchcodec"}).output_hash(ids)
    assert base.output_hash(ids) != base.output_hash({**ids, "depth": "m@2"})
    assert base.output_hash(ids) != build({"input": "i", "output": "o", "fps": 1}).output_hash(ids)
    # only the stages that run count; adding one, or changing what it writes, changes the hash
    assert base.output_hash(ids) == base.output_hash({**ids, "flow": "raft@2"})
    both = build({"input": "i", "output": "o", "stages": "flow,depth"})
    assert both.stages == ("flow", "depth") and both.output_hash(ids) != base.output_hash(ids)
    fewer = build({"input": "i", "output": "o", "stages": "depth,flow", "flow_updates": 6})
    assert fewer.output_hash(ids) != both.output_hash(ids)


def test_stage_options_are_checked():
    with pytest.raises(UsageError, match="--stages takes"):
        build({"input": "i", "output": "o", "stages": "depth,normals"})
    with pytest.raises(UsageError, match="--detector-threshold"):
        build({"input": "i", "output": "o", "pose_detector_threshold": 1.5})
    with pytest.raises(UsageError, match="--flow-pool-size"):
        build({"input": "i", "output": "o", "flow_pool_size": 0})


def test_saved_config_feeds_back(tmp_path):
    import yaml

    cfg = build({"input": "i", "output": "o", "fps": 3, "depth_batch_size": 2, "stages": "pose,depth"})
    path = tmp_path / "saved.yaml"
    path.write_text(yaml.safe_dump(cfg.to_flat()))
    assert build(load_file(str(path))) == cfg


def test_temporal_and_audit_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("temporal: smooth\ntemporal_sigma: 3\naudit:\n  flicker: 0.2\n  blur_sharpness: 10\n")
    cfg = build({"input": "i", "output": "o", **load_file(str(path))})
    assert (cfg.temporal.mode, cfg.temporal.sigma) == ("smooth", 3)
    assert (cfg.audit.flicker, cfg.audit.blur_sharpness) == (0.2, 10)
    path.write_text("temporal: off\n")  # YAML 1.1 reads a bare off as false
    assert build({"input": "i", "output": "o", **load_file(str(path))}).temporal.mode == "off"
    base = build({"input": "i", "output": "o"})
    ids = {"depth": "m@1"}
    assert cfg.output_hash(ids) != base.output_hash(ids)  # thresholds change the flags written
    bad_values = [
        ({"audit_flicker": -1}, "audit_flicker"),
        ({"temporal_mode": "x"}, "--temporal"),
        ({"temporal_cut_threshold": 2}, "--cut-threshold"),
        ({"flow_backward": "yes"}, "flow_backward"),
    ]
    for bad, message in bad_values:
        with pytest.raises(UsageError, match=message):
            build({"input": "i", "output": "o", **bad})


def test_auto_precision_hashes_as_fp32_and_explicit_half_precision_does_not():
    """A catalogue made in fp32 is not redone when the default becomes auto (bf16 on a GPU, within
    the tested tolerance); asking for bf16 by name is a different config."""
    ids = {"depth": "m@1"}
    auto = build({"input": "i", "output": "o"})
    assert auto.depth.precision == "auto"
    fp32 = build({"input": "i", "output": "o", "depth_precision": "fp32"})
    bf16 = build({"input": "i", "output": "o", "depth_precision": "bf16"})
    assert auto.output_hash(ids) == fp32.output_hash(ids) != bf16.output_hash(ids)
