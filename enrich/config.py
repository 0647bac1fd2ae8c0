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
from dataclasses import dataclass, field, fields
from typing import Any

from enrich.errors import UsageError

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
PRECISIONS = ("fp32", "fp16", "bf16")
# Bumped whenever the way depth is quantised or stored changes, so old rows are redone.
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class DepthConfig:
    """The depth stage. `None` means: detect from the cluster at launch."""

    model: str = DEFAULT_DEPTH_MODEL  # hub id, local save_pretrained folder, s3:// prefix, or random:NAME
    batch_size: int | None = None  # frames per forward pass; auto: 1 on CPU, 16 on GPU
    gpus: float | None = None  # GPUs per actor (fractions share a GPU); auto: 1 if the cluster has GPUs
    pool_size: int | None = None  # actors; auto: GPUs in the cluster / gpus, or 1 on CPU
    precision: str = "fp32"  # fp16/bf16 apply on CUDA only
    threads: int | None = None  # torch threads per CPU actor; auto: the node's cores


@dataclass(frozen=True)
class RunConfig:
    input: str
    output: str
    fps: float | None = None  # sampling rate; None = every frame
    max_frames_per_clip: int | None = None
    address: str | None = None  # an existing Ray cluster; None = an embedded local one
    force: bool = False  # redo every clip, even those already up to date
    depth: DepthConfig = field(default_factory=DepthConfig)

    def output_hash(self, depth_model_id: str) -> str:
        """Hash of everything that changes the rows written: sampling, model identity, precision."""
        payload = {
            "manifest_version": MANIFEST_VERSION,
            "fps": self.fps,
            "max_frames_per_clip": self.max_frames_per_clip,
            "depth_model": depth_model_id,
            "depth_precision": self.depth.precision,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_flat(self) -> dict[str, Any]:
        """The same keys a config file takes, so a saved config can be fed back with --config."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}
        for section in SECTIONS:
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                flat[f"{section}_{key}"] = value
        return flat


SECTIONS = {"depth": DepthConfig}
TOP_KEYS = {f.name for f in fields(RunConfig)} - set(SECTIONS)


def known_keys() -> list[str]:
    keys = sorted(TOP_KEYS - {"input", "output"})
    for section, cls in SECTIONS.items():
        keys += [f"{section}_{f.name}" for f in fields(cls)]
    return keys


def load_file(path: str) -> dict[str, Any]:
    """Read a YAML or TOML config into flat keys."""
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if path.endswith(".toml"):
            data = tomllib.loads(raw.decode())
        else:
            import yaml

            data = yaml.safe_load(raw) or {}
    except Exception as exc:  # the parsers' own exception types differ; all mean "bad file"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot parse config {path}: {first_line}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a mapping of keys to values")
    return flatten(data, source=path)


def flatten(data: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key in SECTIONS and isinstance(value, dict):
            for sub, subval in value.items():
                flat[f"{key}_{str(sub).replace('-', '_')}"] = subval
        else:
            flat[key] = value
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
    cfg = RunConfig(**top, **sections)
    validate(cfg)
    return cfg


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _positive(value: Any, name: str, kind: type) -> None:
    if value is None:
        return
    _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number, got {value!r}")
    if kind is int:
        _check(float(value).is_integer(), f"{name} must be a whole number, got {value!r}")
    _check(value > 0, f"{name} must be > 0, got {value!r}")


def validate(cfg: RunConfig) -> None:
    _positive(cfg.fps, "--fps", float)
    _positive(cfg.max_frames_per_clip, "--max-frames-per-clip", int)
    d = cfg.depth
    _check(isinstance(d.model, str) and bool(d.model.strip()), "--depth-model must not be empty")
    _positive(d.batch_size, "--depth-batch-size", int)
    _positive(d.pool_size, "--depth-pool-size", int)
    _positive(d.threads, "--depth-threads", int)
    if d.gpus is not None:
        _check(isinstance(d.gpus, (int, float)) and d.gpus >= 0, f"--depth-gpus must be >= 0, got {d.gpus!r}")
    _check(d.precision in PRECISIONS, f"--depth-precision must be one of {', '.join(PRECISIONS)}, got {d.precision!r}")
