"""The one run configuration: frozen dataclasses, loaded from YAML/TOML and overridden by flags.

Config files use the same keys as the command-line flags, with underscores: `fps`,
`max_frames_per_clip`, `depth_model`, `depth_batch_size`, ... A stage's keys may also be nested
(`depth: {model: ..., batch_size: 8}`). Flags win over the file. The resolved config is saved
beside the manifests, and `output_hash` (the part that changes what is written) is in every row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from enrich.errors import UsageError
from enrich.ops.video import DECODERS  # both give the same frames, so the decoder is not in the hash

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
DEFAULT_FLOW_MODEL = "raft_large"
DEFAULT_POSE_MODEL = "usyd-community/vitpose-base-simple"
DEFAULT_DETECTOR_MODEL = "PekingU/rtdetr_r50vd_coco_o365"
# Model stages, in the order the pipeline runs them: flow first, so each frame's copy of its
# successor (`next_frame`) leaves the object store before the other models see the frame.
STAGES = ("flow", "depth", "pose")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
FLOW_PRECISIONS = ("auto", "fp32", "bf16")  # fp16 would overflow RAFT's correlation volume
# Bumped whenever the way outputs are computed or stored changes, so old rows are redone.
MANIFEST_VERSION = 3
TEMPORAL_MODES = ("off", "align", "smooth")


@dataclass(frozen=True)
class StageConfig:
    """Resources shared by every model stage. `None` means: detect from the cluster at launch."""

    model: str = ""
    batch_size: int | None = None  # items per forward pass; auto: per stage, small on CPU
    gpus: float | None = None  # GPUs per actor (fractions share a GPU); auto: see `enrich.resources`
    pool_size: int | None = None  # actors; auto: see `enrich.resources`
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU (flow: fp32 weights, TF32 on CUDA)
    threads: int | None = None  # torch threads per CPU model replica; auto: see `enrich.resources`
    compile: bool = False  # torch.compile the model (one graph per input size; README: Precision)

    def output_fields(self) -> dict[str, Any]:
        """The fields that change what the stage writes (the rest only change speed)."""
        # models: pinned ids; compile: the same model, within float noise (tests/stages/test_compile.py)
        skip = {"model", "detector_model", "batch_size", "gpus", "pool_size", "threads", "compile"}
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        # `auto` keeps fp32's hash: where it picks bf16 (CUDA, AMX CPUs) it stays within the tested
        # tolerance of fp32 (tests/stages/test_precision.py), so a catalogue is not redone for it.
        if found.get("precision") == "auto":
            found["precision"] = "fp32"
        return found


@dataclass(frozen=True)
class DepthConfig(StageConfig):
    model: str = DEFAULT_DEPTH_MODEL  # hub id, local save_pretrained folder, s3:// prefix, or random:NAME


@dataclass(frozen=True)
class FlowConfig(StageConfig):
    model: str = DEFAULT_FLOW_MODEL  # raft_large | raft_small [:PATH to a state dict, local or s3://] | random:ARCH
    updates: int = 12  # RAFT refinement iterations (torchvision's default)
    backward: bool = True  # also frame t+1 -> t, for the flow_inconsistent audit (doubles RAFT's work)


@dataclass(frozen=True)
class PoseConfig(StageConfig):
    model: str = DEFAULT_POSE_MODEL  # ViTPose: hub id, local folder, s3:// prefix, or random:NAME
    detector_model: str = DEFAULT_DETECTOR_MODEL  # RT-DETR person detector, same forms
    detector_threshold: float = 0.5  # minimum person score


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal consistency of relative depth along each clip (README: Temporal consistency)."""

    mode: str = "align"  # off | align (chain each frame onto its predecessor) | smooth (align, then filter)
    sigma: float = 2.0  # smooth: Gaussian sigma, in sampled frames
    cut_threshold: float = 0.15  # cut distance (0..1) above which, and well above its neighbours', a shot ends


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of the per-frame flags; every score behind them is stored (README: Audits)."""

    blur_sharpness: float = 30.0  # motion_blur: Laplacian variance below this
    dark_fraction: float = 0.6  # exposure: more than this fraction of pixels below luma 16 ...
    bright_fraction: float = 0.3  # ... or more than this fraction above luma 240
    texture_std: float = 3.0  # a 16x16 tile is textureless below this luma standard deviation
    low_texture_fraction: float = 0.6  # low_texture: more than this fraction of tiles textureless
    near_fraction: float = 0.6  # close_range: more than this fraction of the view is near field ...
    near_metric_m: float = 0.75  # ... (metric depth: nearer than this many metres)
    person_area: float = 0.5  # ... or a person's box covers more than this fraction (pose)
    specular_fraction: float = 0.03  # transparent_reflective: highlights above this fraction ...
    reflection_mismatch: float = 0.5  # ... and image edges on flat depth above this fraction
    flicker: float = 0.1  # depth_flicker: disagreement with the previous frame above this, after alignment
    flow_inconsistent_fraction: float = 0.3  # flow_inconsistent: forward-backward failures above this


@dataclass(frozen=True)
class RunConfig:
    input: str
    output: str
    fps: float | None = None  # sampling rate; None = every frame
    max_frames_per_clip: int | None = None
    stages: tuple[str, ...] = ("depth",)  # model stages to run, any subset of STAGES
    address: str | None = None  # an existing Ray cluster; None = an embedded local one
    force: bool = False  # redo every clip, even those already up to date
    retry_limit: int = 3  # a clip that failed this many times (same content and config) is left alone
    decoder: str = "decord"  # decord (decord indexes, PyAV decodes) | torchcodec (needs FFmpeg's libraries)
    depth: DepthConfig = field(default_factory=DepthConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def output_hash(self, model_ids: dict[str, str]) -> str:
        """Hash of everything that changes the rows written: sampling, stages, model identities."""
        payload = {
            "manifest_version": MANIFEST_VERSION,
            "fps": self.fps,
            "max_frames_per_clip": self.max_frames_per_clip,
            "stages": {name: {"model": model_ids[name], **getattr(self, name).output_fields()} for name in self.stages},
            "temporal": dataclasses.asdict(self.temporal),
            "audit": dataclasses.asdict(self.audit),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_flat(self) -> dict[str, Any]:
        """The same keys a config file takes, so a saved config can be fed back with --config."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}
        flat["stages"] = ",".join(self.stages)
        for section in SECTIONS:
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                flat[f"{section}_{key}"] = value
        return flat


SECTIONS = {
    "depth": DepthConfig,
    "flow": FlowConfig,
    "pose": PoseConfig,
    "temporal": TemporalConfig,
    "audit": AuditConfig,
}
TOP_KEYS = {f.name for f in fields(RunConfig)} - set(SECTIONS)


def known_keys() -> list[str]:
    keys = sorted(TOP_KEYS - {"input", "output"})
    for section, cls in SECTIONS.items():
        keys += [f"{section}_{f.name}" for f in fields(cls)]
    return keys


def load_file(path: str) -> dict[str, Any]:
    """Read a YAML or TOML config into flat keys."""
    return flatten(read_mapping(path), source=path)


def read_mapping(path: str) -> dict[str, Any]:
    """A YAML (or JSON) or TOML file holding a mapping, as it is written."""
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".toml"):
            data = tomllib.loads(raw.decode())
        elif path.endswith(".json"):  # YAML would read 1e-05 as a string
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw) or {}
    except Exception as exc:  # the parsers' own exception types differ; all mean "bad file"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot parse config {path}: {first_line}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a mapping of keys to values")
    return data


def flatten(data: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key in SECTIONS and isinstance(value, dict):
            for sub, subval in value.items():
                flat[f"{key}_{str(sub).replace('-', '_')}"] = subval
        elif key == "temporal":  # `temporal: smooth`, as the flag is written
            flat["temporal_mode"] = value
        else:
            flat[key] = value
    if flat.get("temporal_mode") is False:  # YAML 1.1 reads a bare `off` as false
        flat["temporal_mode"] = "off"
    unknown = sorted(set(flat) - set(known_keys()) - {"input", "output"})
    if unknown:
        raise UsageError(f"unknown config key {unknown[0]!r} in {source} (known: {', '.join(known_keys())})")
    return flat


def build(values: dict[str, Any]) -> RunConfig:
    """Validate flat keys (file values updated by flags) into a frozen RunConfig."""
    top = {k: v for k, v in values.items() if k in TOP_KEYS}
    sections = {}
    for section, cls in SECTIONS.items():
        prefix = f"{section}_"
        sub = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        sections[section] = cls(**sub)
    for key in ("input", "output"):
        if not values.get(key):
            raise UsageError(f"missing {key.upper()}")
    if "stages" in top:
        top["stages"] = parse_stages(top["stages"])
    cfg = RunConfig(**top, **sections)
    validate(cfg)
    return cfg


def parse_stages(value: Any) -> tuple[str, ...]:
    """`depth,flow` or a list -> the stages in pipeline order; unknown names are an error."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise UsageError(f"--stages takes a comma-separated subset of {','.join(STAGES)}, got {value!r}")
    return tuple(n for n in STAGES if n in names)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _positive(value: Any, name: str, kind: type) -> None:
    if value is None:
        return
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        f"{name} must be a finite number, got {value!r}",
    )
    if kind is int:
        _check(float(value).is_integer(), f"{name} must be a whole number, got {value!r}")
    _check(value > 0, f"{name} must be > 0, got {value!r}")


def validate(cfg: RunConfig) -> None:
    _positive(cfg.fps, "--fps", float)
    _positive(cfg.max_frames_per_clip, "--max-frames-per-clip", int)
    _positive(cfg.retry_limit, "--retry-limit", int)
    _check(cfg.decoder in DECODERS, f"--decoder must be one of {', '.join(DECODERS)}, got {cfg.decoder!r}")
    for name in STAGES:
        section = getattr(cfg, name)
        _check(isinstance(section.model, str) and bool(section.model.strip()), f"--{name}-model must not be empty")
        for key in ("batch_size", "pool_size", "threads"):
            _positive(getattr(section, key), f"--{name}-{key.replace('_', '-')}", int)
        if section.gpus is not None:
            _check(
                isinstance(section.gpus, (int, float)) and section.gpus >= 0,
                f"--{name}-gpus must be >= 0, got {section.gpus!r}",
            )
        _check(isinstance(section.compile, bool), f"{name}_compile must be true or false, got {section.compile!r}")
        _check(
            section.precision in PRECISIONS,
            f"--{name}-precision must be one of {', '.join(PRECISIONS)}, got {section.precision!r}",
        )
    _positive(cfg.flow.updates, "--flow-updates", int)
    _check(
        cfg.flow.precision in FLOW_PRECISIONS,
        "--flow-precision must be auto, fp32 or bf16 (fp16 would overflow RAFT's correlation volume)",
    )
    _check(
        cfg.temporal.mode in TEMPORAL_MODES,
        f"--temporal must be one of {', '.join(TEMPORAL_MODES)}, got {cfg.temporal.mode!r}",
    )
    _positive(cfg.temporal.sigma, "--temporal-sigma", float)
    _check(isinstance(cfg.flow.backward, bool), f"flow_backward must be true or false, got {cfg.flow.backward!r}")
    for f in fields(AuditConfig):
        value = getattr(cfg.audit, f.name)
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
            f"audit_{f.name} must be a number >= 0, got {value!r}",
        )
    c = cfg.temporal.cut_threshold
    _check(
        isinstance(c, (int, float)) and not isinstance(c, bool) and 0 < c <= 1,
        f"--cut-threshold must be in (0, 1], got {c!r}",
    )
    t = cfg.pose.detector_threshold
    _check(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1,
        f"--detector-threshold must be between 0 and 1, got {t!r}",
    )
