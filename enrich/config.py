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
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from enrich.errors import UsageError
from enrich.ops.video import DECODERS  # both give the same frames, so the decoder is not in the hash
from enrich.stages import REGISTRY, pipeline_order
from enrich.stages.spec import StageConfig, check, positive

# Model stages, in the order the pipeline runs them (see `enrich.stages.pipeline_order`).
STAGES = pipeline_order(REGISTRY)
# Bumped whenever the way outputs are computed or stored changes, so old rows are redone.
MANIFEST_VERSION = 4
TEMPORAL_MODES = ("off", "align", "smooth")


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
    # Every model stage's section, run or not (`cfg.depth`, `cfg.section("depth")`): see `enrich.stages`.
    sections: Mapping[str, StageConfig] = field(default_factory=lambda: default_sections())
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def section(self, name: str) -> StageConfig:
        return self.sections[name]

    def __getattr__(self, name: str):  # cfg.depth, cfg.flow, ...: only called for names not found
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(name)

    def output_hash(self, model_ids: dict[str, str]) -> str:
        """Hash of everything that changes the rows written (every part's hash, `part_hashes`)."""
        return _hash(self.part_hashes(model_ids))

    def part_hashes(self, model_ids: dict[str, str]) -> dict[str, str]:
        """The hash of each part of a clip's outputs that can be redone alone: `frames` (sampling,
        the stages whose columns are in frames, temporal and audit settings), and each stage of the
        run with a table of its own (sampling, which its windows follow, and its own settings)."""

        def stage(name: str) -> dict:
            return {"model": model_ids[name], **self.section(name).output_fields()}

        sampling = {"manifest_version": MANIFEST_VERSION, "fps": self.fps, "max_frames": self.max_frames_per_clip}
        frames = {
            **sampling,
            "stages": {name: stage(name) for name in self.stages if not REGISTRY[name].table},
            "temporal": dataclasses.asdict(self.temporal),
            "audit": dataclasses.asdict(self.audit),
        }
        # windows within shots follow the cut threshold
        cuts = {"cut_threshold": self.temporal.cut_threshold}
        own = {name: _hash({**sampling, **cuts, name: stage(name)}) for name in self.stages if REGISTRY[name].table}
        return {"frames": _hash(frames), **own}

    def to_flat(self) -> dict[str, Any]:
        """The same keys a config file takes, so a saved config can be fed back with --config."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS and f.name != "sections"}
        flat["stages"] = ",".join(self.stages)
        for name in SECTIONS:
            section = self.sections[name] if name in REGISTRY else getattr(self, name)
            for key, value in dataclasses.asdict(section).items():
                flat[f"{name}_{key}"] = value
        return flat


def _hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def default_sections() -> dict[str, StageConfig]:
    return {name: stage.config() for name, stage in REGISTRY.items()}


# Config sections: each model stage's (from its package), then the run's own.
SECTIONS: dict[str, type] = {
    **{name: stage.config for name, stage in REGISTRY.items()},
    "temporal": TemporalConfig,
    "audit": AuditConfig,
}
TOP_KEYS = {f.name for f in fields(RunConfig)} - set(SECTIONS) - {"sections"}


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
    stage_sections = {name: sections.pop(name) for name in REGISTRY}
    cfg = RunConfig(**top, sections=stage_sections, **sections)
    validate(cfg)
    return cfg


def parse_stages(value: Any) -> tuple[str, ...]:
    """`depth,flow` or a list -> the stages in pipeline order; unknown names are an error."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise UsageError(f"--stages takes a comma-separated subset of {','.join(STAGES)}, got {value!r}")
    return pipeline_order(names)


def validate(cfg: RunConfig) -> None:
    positive(cfg.fps, "--fps", float)
    positive(cfg.max_frames_per_clip, "--max-frames-per-clip", int)
    positive(cfg.retry_limit, "--retry-limit", int)
    check(cfg.decoder in DECODERS, f"--decoder must be one of {', '.join(DECODERS)}, got {cfg.decoder!r}")
    for name in STAGES:
        section = cfg.section(name)
        check(isinstance(section.model, str) and bool(section.model.strip()), f"--{name}-model must not be empty")
        for key in ("batch_size", "pool_size", "threads"):
            positive(getattr(section, key), f"--{name}-{key.replace('_', '-')}", int)
        if section.gpus is not None:
            check(
                isinstance(section.gpus, (int, float)) and section.gpus >= 0,
                f"--{name}-gpus must be >= 0, got {section.gpus!r}",
            )
        check(isinstance(section.compile, bool), f"{name}_compile must be true or false, got {section.compile!r}")
        check(
            section.precision in section.precisions,
            f"--{name}-precision must be one of {', '.join(section.precisions)}, got {section.precision!r}"
            + section.precision_why,
        )
        section.validate(name)
    check(
        cfg.temporal.mode in TEMPORAL_MODES,
        f"--temporal must be one of {', '.join(TEMPORAL_MODES)}, got {cfg.temporal.mode!r}",
    )
    positive(cfg.temporal.sigma, "--temporal-sigma", float)
    for f in fields(AuditConfig):
        value = getattr(cfg.audit, f.name)
        check(
            isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
            f"audit_{f.name} must be a number >= 0, got {value!r}",
        )
    c = cfg.temporal.cut_threshold
    check(
        isinstance(c, (int, float)) and not isinstance(c, bool) and 0 < c <= 1,
        f"--cut-threshold must be in (0, 1], got {c!r}",
    )
