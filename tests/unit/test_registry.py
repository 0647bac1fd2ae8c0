"""The registry of model stages: what each stage package declares is what the rest of enrich uses."""

from __future__ import annotations

import dataclasses

import pytest

from enrich.cli import build_parser
from enrich.config import SECTIONS, build, known_keys
from enrich.manifest.schema import CLIPS, FRAMES, JSON_COLUMNS, MODEL_COLUMNS, PARTS, STAGED, TABLES
from enrich.stages import MODEL_STAGES, REGISTRY, pipeline_order
from enrich.stages.write import WriteParts

STAGES = list(REGISTRY.values())


def test_each_registered_name_is_a_package_whose_stage_has_that_name():
    assert list(REGISTRY) == list(MODEL_STAGES)
    for name, stage in REGISTRY.items():
        assert stage.name == name
        assert stage.actor.__module__.startswith(f"enrich.stages.{name}.")


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_declared_column_is_in_the_manifest_with_its_type_and_is_written(stage):
    produced = set(stage.actor.outputs) | set(stage.encoder.outputs if stage.encoder else ())
    table = TABLES[stage.table] if stage.table else FRAMES  # its own, or frames
    for column in stage.columns:
        assert table.field(column.name).type == column.type, column.name
        assert STAGED.field(column.name).type == column.type, column.name
        assert column.name in produced, f"{stage.name}: nothing writes {column.name}"
        assert column.name in WriteParts.inputs, f"the writer would drop {column.name}"
        assert column.doc
        assert (column.name in JSON_COLUMNS) == column.json
    assert stage.model_column in MODEL_COLUMNS
    assert table.field(stage.model_column).type == CLIPS.field(stage.model_column).type
    if stage.table:  # not in frames; hashed as a part of its own
        assert not set(stage.fields) & set(FRAMES) and stage.name in PARTS
    for column in stage.clip_columns:
        assert CLIPS.field(column.name).type == column.type


def test_the_manifest_has_no_stage_column_that_no_stage_declares():
    declared = {c.name for s in STAGES if not s.table for c in s.columns}
    declared |= {s.model_column for s in STAGES if not s.table}
    shared = {"clip_id", "clip_uri", "frame_index", "timestamp_s", "width", "height", "segment", "flags", "audit"}
    shared |= {"thumb_jpeg", "run_id", "config_hash"}
    assert set(FRAMES.names) == declared | shared


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_flag_sets_a_field_of_its_config_section(stage):
    section = {f.name for f in dataclasses.fields(stage.config)}
    assert SECTIONS[stage.name] is stage.config
    assert any(f.flag == f"--{stage.name}-model" for f in stage.flags)
    parser = build_parser()
    for flag in stage.flags:
        assert flag.key in section, f"{flag.flag} sets {flag.key}, which {stage.config.__name__} lacks"
        assert f"{stage.name}_{flag.key}" in known_keys()
        if flag.argparse.get("action") == "store_false":
            args = parser.parse_args(["run", "i", "o", flag.flag])
        else:
            value = {int: "3", float: "0.25"}.get(flag.argparse.get("type"), "random:x")
            args = parser.parse_args(["run", "i", "o", flag.flag, value])
        assert f"{stage.name}_{flag.key}" in vars(args)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_lists_its_default_checkpoint_with_a_licence(stage):
    defaults = {f.name: f.default for f in dataclasses.fields(stage.config)}
    listed = {m.spec: m for m in stage.models}
    assert defaults["model"] in listed and listed[defaults["model"]].licence
    assert stage.roles[0] == stage.name and all(role.startswith(stage.name) for role in stage.roles)
    assert any(m.spec.startswith("random:") for m in stage.models), "every stage has a smoke model"


def test_the_pipeline_runs_pair_readers_first_and_config_keeps_that_order():
    assert pipeline_order(["pose", "depth", "flow"]) == ("flow", "depth", "pose")
    assert build({"input": "i", "output": "o", "stages": "pose,depth"}).stages == ("depth", "pose")
    cfg = build({"input": "i", "output": "o", "depth_batch_size": 4})
    assert cfg.depth is cfg.section("depth") and cfg.depth.batch_size == 4
    assert dataclasses.replace(cfg, fps=2.0).depth.batch_size == 4
