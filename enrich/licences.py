"""Every model id a run accepts, with its licence, for `enrich models` and run notes.

A run records the licence of every model it used (where known) in its saved config, and its
summary says so when one of them is for non-commercial use only. The rows come from the stages
themselves (`ModelStage.models`, in each stage package): published checkpoints, smoke models
(`random:NAME`) and the forms that take the user's own weights.
"""

from __future__ import annotations

from dataclasses import dataclass

NON_COMMERCIAL = ("CC-BY-NC-4.0", "Qwen-Research")
SMOKE_LICENCE = "n/a"  # seeded random weights built on the node: no published weights involved
SMOKE_NOTE = "smoke model: random weights, for tests"
OWN_LICENCE = "see source"  # the user's own weights: their licence is wherever they came from


@dataclass(frozen=True)
class KnownModel:
    stage: str  # the role: a stage, or a stage's other model ("pose detector")
    spec: str
    licence: str
    note: str = ""


def all_models() -> list[KnownModel]:
    """Every accepted id or id form, by stage: published checkpoints, smoke models, own weights."""
    from enrich.stages import REGISTRY

    rows = [m for stage in REGISTRY.values() for m in stage.models]
    roles = list(dict.fromkeys(m.stage for m in rows))
    return sorted(rows, key=lambda m: roles.index(m.stage))  # stable: keeps each group's order


def licence_of(spec: str) -> str | None:
    """The licence of a known checkpoint or smoke model (the user's own weights: unknown)."""
    return next((m.licence for m in all_models() if m.spec == spec and m.licence != OWN_LICENCE), None)


def table() -> list[str]:
    rows = [("stage", "model", "licence", "note")] + [(m.stage, m.spec, m.licence, m.note) for m in all_models()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]


def run_licences(specs: dict[str, str]) -> dict[str, str]:
    """role -> licence (or "unknown: check the model card") for the models of a run."""
    return {role: licence_of(spec) or "unknown: check the model card" for role, spec in specs.items()}


def non_commercial_notes(specs: dict[str, str]) -> list[str]:
    return [
        f"note: {role} model {spec} is {licence_of(spec)}: non-commercial use only"
        for role, spec in specs.items()
        if licence_of(spec) in NON_COMMERCIAL
    ]
