"""`enrich models`, and the licence notes a run writes into its summary and saved config."""

from __future__ import annotations

from enrich import licences
from enrich.cli import main
from enrich.config import build
from enrich.models import ModelRef
from enrich.pipeline import Prepared, _config_record
from enrich.plan import make_plan


def prepared(depth_spec: str) -> Prepared:
    cfg = build({"input": "i", "output": "o", "stages": "depth,pose"})
    models = {
        "depth": {"model": ModelRef(depth_spec, "hub", depth_spec, "abc123")},
        "pose": {
            "model": ModelRef("usyd-community/vitpose-base-simple", "hub", "x", "r1"),
            "detector": ModelRef("PekingU/rtdetr_r50vd_coco_o365", "hub", "y", "r2"),
        },
    }
    return Prepared(cfg, models, "hash", make_plan([], None, "hash", False), "run", None)


def test_models_command_lists_defaults_with_licences(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "depth-anything/Depth-Anything-V2-Small-hf  Apache-2.0" in out
    assert "depth-anything/Depth-Anything-V2-Large-hf  CC-BY-NC-4.0" in out and "raft_large" in out


def test_non_commercial_checkpoints_are_called_out():
    nc = prepared("depth-anything/Depth-Anything-V2-Large-hf")
    assert licences.non_commercial_notes(nc.model_specs) == [
        "note: depth model depth-anything/Depth-Anything-V2-Large-hf is CC-BY-NC-4.0: non-commercial use only"
    ]
    record = _config_record(nc)
    assert record["licences"] == {
        "depth": "CC-BY-NC-4.0",
        "pose": "Apache-2.0",
        "pose detector": "Apache-2.0",
    }
    assert record["models"]["pose"] == (
        "usyd-community/vitpose-base-simple@r1; detector PekingU/rtdetr_r50vd_coco_o365@r2"
    )
    assert licences.non_commercial_notes(prepared("depth-anything/Depth-Anything-V2-Small-hf").model_specs) == []
    assert _config_record(prepared("/my/own/model"))["licences"]["depth"].startswith("unknown")
