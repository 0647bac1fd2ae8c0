"""`enrich models`, and the licence notes a run writes into its summary and saved config."""

from __future__ import annotations

import re

import pytest

from enrich import licences
from enrich.cli import main
from enrich.config import build
from enrich.pipeline import Prepared, config_record
from enrich.plan import make_plan
from enrich.stages import model_stage
from enrich.stages.caption import CaptionConfig
from enrich.stages.caption.actor import RANDOM_MODELS as CAPTION_SMOKE
from enrich.stages.depth import DEFAULT_MODEL as DEFAULT_DEPTH_MODEL
from enrich.stages.depth import DepthConfig
from enrich.stages.depth.actor import RANDOM_MODELS as DEPTH_SMOKE
from enrich.stages.flow import ARCHS, FlowConfig
from enrich.stages.flow import DEFAULT_MODEL as DEFAULT_FLOW_MODEL
from enrich.stages.pose import DEFAULT_DETECTOR_MODEL, PoseConfig
from enrich.stages.pose import DEFAULT_MODEL as DEFAULT_POSE_MODEL
from enrich.stages.pose.actor import RANDOM_MODELS as POSE_SMOKE
from enrich.weights import ModelRef


def prepared(depth_spec: str) -> Prepared:
    cfg = build({"input": "i", "output": "o", "stages": "depth,pose"})
    models = {
        "depth": {"model": ModelRef(depth_spec, "hub", depth_spec, "abc123")},
        "pose": {
            "model": ModelRef("usyd-community/vitpose-base-simple", "hub", "x", "r1"),
            "detector": ModelRef("PekingU/rtdetr_r50vd_coco_o365", "hub", "y", "r2"),
        },
    }
    return Prepared(cfg, models, "hash", make_plan([], None, {"frames": "hash"}, False), "run")


def models_rows(capsys) -> dict[tuple[str, str], tuple[str, str]]:
    """`enrich models` as (stage, model) -> (licence, note)."""
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["stage", "model", "licence", "note"]
    rows = [re.split(r"\s{2,}", line) for line in lines[1:] if not line.endswith(".")]  # not the footnotes
    assert all(len(r) == 4 for r in rows), rows
    table = {(stage, model): (licence, note) for stage, model, licence, note in rows}
    assert len(table) == len(rows)  # no row twice
    return table


def test_models_command_lists_defaults_with_licences(capsys):
    rows = models_rows(capsys)
    assert rows["depth", DEFAULT_DEPTH_MODEL] == ("Apache-2.0", "default; V2 relative")
    assert rows["depth", "depth-anything/Depth-Anything-V2-Large-hf"][0] == "CC-BY-NC-4.0"
    assert rows["flow", DEFAULT_FLOW_MODEL][1].startswith("default")
    assert rows["pose", DEFAULT_POSE_MODEL] == ("Apache-2.0", "default")
    assert rows["pose detector", DEFAULT_DETECTOR_MODEL] == ("Apache-2.0", "default")


@pytest.mark.parametrize(
    "spec, licence",
    [
        ("LiheYoung/depth-anything-small-hf", "Apache-2.0"),
        ("LiheYoung/depth-anything-base-hf", "Apache-2.0"),
        ("LiheYoung/depth-anything-large-hf", "Apache-2.0"),
        ("depth-anything/Depth-Anything-V2-Base-hf", "CC-BY-NC-4.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf", "Apache-2.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf", "CC-BY-NC-4.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf", "CC-BY-NC-4.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf", "Apache-2.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf", "CC-BY-NC-4.0"),
        ("depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf", "CC-BY-NC-4.0"),
    ],
)
def test_models_command_lists_depth_anything_v1_and_metric_checkpoints(capsys, spec, licence):
    assert models_rows(capsys)["depth", spec][0] == licence
    assert licences.licence_of(spec) == licence


def test_models_command_lists_the_forms_for_own_weights(capsys):
    rows = models_rows(capsys)
    assert rows["flow", "raft_small"][0] == "BSD-3-Clause"
    assert rows["flow", "ARCH:PATH"][1].startswith("local path forms")
    for stage in ("depth", "pose", "pose detector"):
        assert rows[stage, "PATH | s3://PREFIX"][1].startswith("local path forms")


STAGE_SMOKE_MODELS = {"depth": DEPTH_SMOKE, "flow": ARCHS, "pose": POSE_SMOKE, "caption": CAPTION_SMOKE}


def test_models_command_lists_every_smoke_model_of_each_stage(capsys):
    rows = models_rows(capsys)
    listed = {(stage.split()[0], model) for stage, model in rows}  # "pose detector" is of the pose stage
    for stage, names in STAGE_SMOKE_MODELS.items():
        for name in names:
            assert (stage, f"random:{name}") in listed, f"random:{name} ({stage}) is not in `enrich models`"
    smoke = {key: value for key, value in rows.items() if key[1].startswith("random:")}
    assert len(smoke) == sum(map(len, STAGE_SMOKE_MODELS.values()))
    assert set(smoke.values()) == {(licences.SMOKE_LICENCE, licences.SMOKE_NOTE)}
    assert rows["pose", "random:vitpose-tiny"] and rows["pose detector", "random:rtdetr-tiny"]


def test_every_listed_smoke_model_is_accepted_by_its_stage(capsys):
    configs = {
        "depth": lambda spec: DepthConfig(model=spec),
        "flow": lambda spec: FlowConfig(model=spec),
        # Both pose models resolve against the same names: one id serves for both.
        "pose": lambda spec: PoseConfig(model=spec, detector_model=spec),
        "caption": lambda spec: CaptionConfig(model=spec),
    }
    smoke = [(stage.split()[0], spec) for stage, spec in models_rows(capsys) if spec.startswith("random:")]
    assert smoke
    for stage, spec in smoke:
        refs = model_stage(stage).resolve(configs[stage](spec))
        assert {ref.kind for ref in refs.values()} == {"random"}
        assert {ref.spec for ref in refs.values()} == {spec}
        assert licences.licence_of(spec) == licences.SMOKE_LICENCE


def test_a_smoke_model_is_not_a_non_commercial_one():
    specs = {"depth": "random:depth-anything-v2-large", "pose": "random:vitpose-base"}
    assert licences.run_licences(specs) == {"depth": "n/a", "pose": "n/a"}
    assert licences.non_commercial_notes(specs) == []
    assert licences.licence_of("random:no-such-model") is None


def test_non_commercial_checkpoints_are_called_out():
    nc = prepared("depth-anything/Depth-Anything-V2-Large-hf")
    assert licences.non_commercial_notes(nc.model_specs) == [
        "note: depth model depth-anything/Depth-Anything-V2-Large-hf is CC-BY-NC-4.0: non-commercial use only"
    ]
    record = config_record(nc)
    assert record["licences"] == {
        "depth": "CC-BY-NC-4.0",
        "pose": "Apache-2.0",
        "pose detector": "Apache-2.0",
    }
    assert record["models"]["pose"] == (
        "usyd-community/vitpose-base-simple@r1; detector PekingU/rtdetr_r50vd_coco_o365@r2"
    )
    assert licences.non_commercial_notes(prepared("depth-anything/Depth-Anything-V2-Small-hf").model_specs) == []
    assert config_record(prepared("/my/own/model"))["licences"]["depth"].startswith("unknown")
