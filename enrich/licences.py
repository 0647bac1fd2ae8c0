"""Every model id a run accepts, with its licence, for `enrich models` and run notes.

A run records the licence of every model it used (where known) in its saved config, and its
summary says so when one of them is for non-commercial use only.

`KNOWN_MODELS` holds the published checkpoints; the smoke models (`random:NAME`) are read from the
stage modules' own tuples (`smoke_models`), and `SPEC_FORMS` names the forms that take the user's
own weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

NON_COMMERCIAL = ("CC-BY-NC-4.0",)
SMOKE_LICENCE = "n/a"  # seeded random weights built on the node: no published weights involved
SMOKE_NOTE = "smoke model: random weights, for tests"
OWN_LICENCE = "see source"  # the user's own weights: their licence is wherever they came from
ROLES = ("depth", "flow", "pose", "pose detector")  # the order `enrich models` lists them in


@dataclass(frozen=True)
class KnownModel:
    stage: str  # the role: a stage, or "pose detector"
    spec: str
    licence: str
    note: str = ""


_DA = "depth-anything/Depth-Anything-V2"
_INDOOR = "V2 metric, indoor: Hypersim, 0-20 m"
_OUTDOOR = "V2 metric, outdoor: Virtual KITTI 2, 0-80 m"
KNOWN_MODELS = (
    # Depth Anything V2 (relative): Small is Apache-2.0, Base and Large CC-BY-NC-4.0 (the upstream
    # repository's LICENSE section and the transformers model doc).
    KnownModel("depth", f"{_DA}-Small-hf", "Apache-2.0", "default; V2 relative"),
    KnownModel("depth", f"{_DA}-Base-hf", "CC-BY-NC-4.0", "V2 relative"),
    KnownModel("depth", f"{_DA}-Large-hf", "CC-BY-NC-4.0", "V2 relative"),
    # Depth Anything V2 metric: fine-tuned from the V2 models of the same size, whose licences they keep.
    # (Some of the -hf ports' hub pages carry an apache-2.0 tag, others none: listed as upstream licenses
    # the model they were fine-tuned from, the cautious reading.)
    KnownModel("depth", f"{_DA}-Metric-Indoor-Small-hf", "Apache-2.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Indoor-Base-hf", "CC-BY-NC-4.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Indoor-Large-hf", "CC-BY-NC-4.0", _INDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Small-hf", "Apache-2.0", _OUTDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Base-hf", "CC-BY-NC-4.0", _OUTDOOR),
    KnownModel("depth", f"{_DA}-Metric-Outdoor-Large-hf", "CC-BY-NC-4.0", _OUTDOOR),
    # Depth Anything V1: every size Apache-2.0.
    KnownModel("depth", "LiheYoung/depth-anything-small-hf", "Apache-2.0", "V1 relative"),
    KnownModel("depth", "LiheYoung/depth-anything-base-hf", "Apache-2.0", "V1 relative"),
    KnownModel("depth", "LiheYoung/depth-anything-large-hf", "Apache-2.0", "V1 relative"),
    KnownModel("flow", "raft_large", "BSD-3-Clause", "default; torchvision's weights"),
    KnownModel("flow", "raft_small", "BSD-3-Clause", "torchvision's weights"),
    KnownModel("pose", "usyd-community/vitpose-base-simple", "Apache-2.0", "default"),
    KnownModel("pose detector", "PekingU/rtdetr_r50vd_coco_o365", "Apache-2.0", "default"),
)

_FOLDER = "a save_pretrained folder, local or s3://"
_STATE_DICT = "a RAFT state dict, local or s3://; ARCH: a RAFT id above"
SPEC_FORMS = (
    KnownModel("depth", "PATH | s3://PREFIX", OWN_LICENCE, f"local path forms: {_FOLDER}"),
    KnownModel("flow", "ARCH:PATH", OWN_LICENCE, f"local path forms: {_STATE_DICT}"),
    KnownModel("pose", "PATH | s3://PREFIX", OWN_LICENCE, f"local path forms: {_FOLDER}"),
    KnownModel("pose detector", "PATH | s3://PREFIX", OWN_LICENCE, f"local path forms: {_FOLDER}"),
)


@functools.cache
def smoke_models() -> tuple[KnownModel, ...]:
    """The `random:NAME` ids each stage accepts, from the stage modules themselves (imported on first
    use: they are light, but a run that never asks should not pay for them)."""
    from enrich.stages import depth, flow, pose

    def smoke(role: str, name: str) -> KnownModel:
        return KnownModel(role, f"random:{name}", SMOKE_LICENCE, SMOKE_NOTE)

    # Pose resolves both of its models against one tuple; the RT-DETR ones are the person detectors.
    return (
        *(smoke("depth", name) for name in depth.RANDOM_MODELS),
        *(smoke("flow", arch) for arch in flow.ARCHS),
        *(smoke("pose detector" if name.startswith("rtdetr") else "pose", name) for name in pose.RANDOM_MODELS),
    )


def all_models() -> list[KnownModel]:
    """Every accepted id or id form, grouped by role: published checkpoints, smoke models, own weights."""
    rows = [*KNOWN_MODELS, *smoke_models(), *SPEC_FORMS]
    return sorted(rows, key=lambda m: ROLES.index(m.stage))  # stable: keeps each group's order


def licence_of(spec: str) -> str | None:
    """The licence of a known checkpoint or smoke model (the user's own weights: unknown)."""
    known = KNOWN_MODELS + smoke_models() if spec.startswith("random:") else KNOWN_MODELS
    return next((m.licence for m in known if m.spec == spec), None)


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
