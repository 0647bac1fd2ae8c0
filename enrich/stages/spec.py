"""What a model stage declares about itself: one `ModelStage` record per stage package.

Everything the rest of enrich needs to know about a model stage is here, so that adding one is one
new package under `enrich/stages/` and one line in `enrich.stages.MODEL_STAGES`:

  * its config section (a `StageConfig` subclass) and its own command-line flags (`Flag`);
  * its published checkpoints, smoke models and spec forms, with licences (`enrich models`);
  * its manifest columns, typed (`Column`), per frame and per clip;
  * how the driver resolves and checks its models, and the actor and encoder that run it.

`enrich.config`, `enrich.cli`, `enrich.manifest.schema` and `enrich.licences` are derived from the
registry of these records. This module must stay light: the CLI imports it before any model code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import pyarrow as pa

from enrich.errors import UsageError
from enrich.licences import SMOKE_LICENCE, SMOKE_NOTE, KnownModel

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class StageConfig:
    """Resources shared by every model stage. `None` means: detect from the cluster at launch.

    A stage's section subclasses this with its own fields (`model` first), documented where they are
    declared; each becomes the config key `STAGE_FIELD` and, when it has a `Flag`, a flag.
    """

    precisions: ClassVar[tuple[str, ...]] = PRECISIONS
    precision_help: ClassVar[str] = "auto (default): bf16 on CUDA and on CPUs with AMX, else fp32"
    precision_why: ClassVar[str] = ""  # why some precisions are missing, for the error line

    model: str = ""
    batch_size: int | None = None  # items per forward pass; auto: per stage, small on CPU
    gpus: float | None = None  # GPUs per actor (fractions share a GPU); auto: see `enrich.resources`
    pool_size: int | None = None  # actors; auto: see `enrich.resources`
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU (flow: fp32 weights, TF32 on CUDA)
    threads: int | None = None  # torch threads per CPU model replica; auto: see `enrich.resources`
    compile: bool = False  # torch.compile the model (one graph per input size; README: Precision)

    # Fields that only change how fast the stage runs, not what it writes (so not in the hash).
    # models: their pinned ids are hashed instead; compile: the same model, within float noise
    # (tests/stages/test_compile.py).
    speed_fields: ClassVar[frozenset[str]] = frozenset(
        {"model", "batch_size", "gpus", "pool_size", "threads", "compile"}
    )

    def output_fields(self) -> dict[str, Any]:
        """The fields that change what the stage writes."""
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.speed_fields}
        # `auto` keeps fp32's hash: where it picks bf16 (CUDA, AMX CPUs) it stays within the tested
        # tolerance of fp32 (tests/stages/test_precision.py), so a catalogue is not redone for it.
        if found.get("precision") == "auto":
            found["precision"] = "fp32"
        return found

    def validate(self, name: str) -> None:
        """The stage's own checks, beyond the shared ones (`enrich.config.validate`); raise UsageError."""


@dataclass(frozen=True)
class Flag:
    """A command-line flag of a stage's own: `Flag("--flow-updates", "updates", ...)` sets `flow.updates`."""

    flag: str
    key: str  # the field of the stage's config section
    help: str
    argparse: dict[str, Any] = field(default_factory=dict)  # type=int, action="store_false", ...


@dataclass(frozen=True)
class Column:
    """A manifest column a stage writes, with what it means (stored as the field's description)."""

    name: str
    type: pa.DataType
    doc: str
    json: bool = False  # travels through Ray as a JSON string (nested values of varying length)
    empty_is_null: bool = False  # the stage writes b"" for "none", stored as null

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type)


@dataclass(frozen=True)
class ModelStage:
    """A model stage as the pipeline sees it (see the module docstring for what derives from it).

    The driver calls `resolve` (pin each model spec to a revision) and `check` (what can be checked
    without loading the model: its config); the actor class gets `actor_kwargs` and loads the model,
    checking its weights (`enrich.stages.base.loading`); `encoder`, if any, is a CPU stage that turns
    the actor's raw output into its stored form.
    """

    name: str
    config: type[StageConfig]
    actor: type
    encoder: type | None
    resolve: Callable[[Any], dict[str, Any]]  # section config -> {role: ModelRef}
    check: Callable[[dict[str, Any]], None]  # raises ValueError with one line; never loads the model
    actor_kwargs: Callable[[Any, dict[str, Any]], dict[str, Any]]  # (section config, refs) -> kwargs
    default_batch: dict[str, int]  # {"cpu": n, "gpu": n}
    columns: tuple[Column, ...]  # per frame, in frames/ (or `table`), besides STAGE_model, which every stage has
    models: tuple[KnownModel, ...]  # published checkpoints, smoke models and spec forms, with licences
    flags: tuple[Flag, ...] = ()  # `--STAGE-model` and the rest of the stage's own flags
    clip_columns: tuple[Column, ...] = ()  # per clip, in clips/
    reads_pairs: bool = False  # needs each frame's successor (decode then emits `next_frame`)
    # section config -> (seconds, k, within shots): needs windows of the clip (decode then emits
    # `window_frames`); within shots, no window crosses a scene cut
    windows: Callable[[Any], tuple[float, int, bool]] | None = None
    # A table of the stage's own (OUTPUT/TABLE/, a file per clip) instead of columns of frames/: its
    # rows are the frames the stage wrote a value for. Nothing else reads what such a stage writes, so
    # it is hashed on its own: a change of its settings, or adding it to a catalogue, redoes it alone.
    table: str | None = None
    # refs -> the attention kernel transformers picks, for `--verbose`'s stage line (imports torch)
    attention: Callable[[dict[str, Any]], str] | None = None

    @property
    def fields(self) -> tuple[pa.Field, ...]:
        return tuple(c.field for c in self.columns)

    @property
    def model_column(self) -> str:
        return f"{self.name}_model"

    @property
    def roles(self) -> tuple[str, ...]:
        """The licence table's roles: `pose`, `pose detector`, ... in the order of `models`."""
        return tuple(dict.fromkeys(m.stage for m in self.models))

    @staticmethod
    def identity(refs: dict[str, Any]) -> str:
        """What rows record as the stage's model: every model it used, pinned."""
        return "; ".join(ref.identity if role == "model" else f"{role} {ref.identity}" for role, ref in refs.items())


def smoke(role: str, names: tuple[str, ...]) -> tuple[KnownModel, ...]:
    """The `random:NAME` rows of a stage's `models`."""
    return tuple(KnownModel(role, f"random:{name}", SMOKE_LICENCE, SMOKE_NOTE) for name in names)


def check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def positive(value: Any, name: str, kind: type) -> None:
    """None (auto), or a finite number > 0 (whole, for `kind` int)."""
    if value is None:
        return
    check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        f"{name} must be a finite number, got {value!r}",
    )
    if kind is int:
        check(float(value).is_integer(), f"{name} must be a whole number, got {value!r}")
    check(value > 0, f"{name} must be > 0, got {value!r}")
