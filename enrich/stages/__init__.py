"""Pipeline stages: decode -> one actor pool per model stage (+ its CPU encoder) -> write.

A model stage is one module exporting `STAGE`, a `ModelStage` (see there for the other places a new
stage touches); register it here and the pipeline and driver checks pick it up.
"""

from __future__ import annotations

import importlib

from enrich.stages.base import ModelStage

MODEL_STAGES = {"depth": "enrich.stages.depth", "flow": "enrich.stages.flow", "pose": "enrich.stages.pose"}


def model_stage(name: str) -> ModelStage:
    """Imported on demand: each stage module pulls in its own model library."""
    return importlib.import_module(MODEL_STAGES[name]).STAGE
