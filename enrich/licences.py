"""The default and well-known checkpoints, with their licences, for `enrich models` and run notes.

A run records the licence of every model it used (where known) in its saved config, and its
summary says so when one of them is for non-commercial use only.
"""

from __future__ import annotations

from dataclasses import dataclass

NON_COMMERCIAL = ("CC-BY-NC-4.0",)


@dataclass(frozen=True)
class KnownModel:
    stage: str
    spec: str
    licence: str
    note: str = ""


KNOWN_MODELS = (
    KnownModel("depth", "depth-anything/Depth-Anything-V2-Small-hf", "Apache-2.0", "default"),
    KnownModel("depth", "depth-anything/Depth-Anything-V2-Base-hf", "CC-BY-NC-4.0"),
    KnownModel("depth", "depth-anything/Depth-Anything-V2-Large-hf", "CC-BY-NC-4.0"),
    KnownModel("flow", "raft_large", "BSD-3-Clause", "default; torchvision's weights"),
    KnownModel("flow", "raft_small", "BSD-3-Clause", "torchvision's weights"),
    KnownModel("pose", "usyd-community/vitpose-base-simple", "Apache-2.0", "default"),
    KnownModel("pose", "PekingU/rtdetr_r50vd_coco_o365", "Apache-2.0", "default person detector"),
)


def licence_of(spec: str) -> str | None:
    """The licence of a known checkpoint (`ARCH:PATH` flow weights are the user's own: unknown)."""
    return next((m.licence for m in KNOWN_MODELS if m.spec == spec), None)


def table() -> list[str]:
    rows = [("stage", "model", "licence", "")] + [(m.stage, m.spec, m.licence, m.note) for m in KNOWN_MODELS]
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
