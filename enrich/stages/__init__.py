"""Pipeline stages: decode -> one actor pool per model stage (+ its CPU encoder) -> write.

A model stage is one package here (`depth/`, `flow/`, `pose/`) whose `STAGE` record
(`enrich.stages.spec.ModelStage`) declares everything about it. Registering it is one name in
`MODEL_STAGES`; its config section, flags, manifest columns and licence rows are derived from there.
The CPU stages shared by every run are modules: `decode`, `audit`, `temporal`, `write`.
"""

from __future__ import annotations

import importlib

from enrich.stages.spec import ModelStage

# In the manifest's column order. Each name is a package of `enrich.stages` exporting `STAGE`.
MODEL_STAGES = ("depth", "flow", "pose", "caption")

REGISTRY: dict[str, ModelStage] = {
    name: importlib.import_module(f"enrich.stages.{name}").STAGE for name in MODEL_STAGES
}


def model_stage(name: str) -> ModelStage:
    return REGISTRY[name]


def pipeline_order(names) -> tuple[str, ...]:
    """The order stages run in: those that read what decode adds for them first (frame pairs, then
    windows), so those copies of frames leave the object store before the other models see them."""
    names = set(names)

    def key(name: str) -> int:
        stage = REGISTRY[name]
        return 0 if stage.reads_pairs else 1 if stage.windows else 2

    return tuple(sorted((n for n in REGISTRY if n in names), key=key))
