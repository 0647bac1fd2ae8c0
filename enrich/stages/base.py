"""What every stage shares: declared columns and resources, and failing items rather than batches.

A stage is a small class: `__init__` loads what it needs once per worker (a model, for actor
stages), `process(batch)` transforms a batch of rows given as a dict of numpy columns. Rows that
already carry an `error` pass through untouched; a row that fails gets its own `error`, and the
rest of its batch goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from enrich.errors import ModelLoadError
from enrich.runtime import yield_to_models

ERROR = "error"  # per-row failure reason, "" when the row is fine (never null: Arrow would type it double)


@dataclass(frozen=True)
class Operator:
    """How the pipeline applies one stage: its class, pool and resources."""

    stage: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    actors: int | None = None  # None: a pool of Ray tasks; N: a pool of N actors holding a model
    calls: int = 1  # concurrent calls per actor, in threads sharing its model (CPU replicas)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = None
    nice: int = 0  # tasks only: the niceness their threads take (`enrich.runtime.yield_to_models`)
    remote_args: dict[str, Any] = field(default_factory=dict)  # extra Ray options, e.g. max_retries
    env: dict[str, str] = field(default_factory=dict)  # environment of the stage's workers
    note: str = ""  # for the stage line: precision, attention kernel

    def describe(self) -> str:
        s = self.stage
        pool = f"{self.actors} actor(s)" if self.actors else "tasks"
        if self.calls > 1:
            pool += f" x {self.calls} concurrent calls"
        gpu = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        batch = f", batch {self.batch_size}" if self.batch_size else ""
        io = f"reads {', '.join(s.inputs)} -> writes {', '.join(s.outputs)}"
        note = f", {self.note}" if self.note else ""
        return f"{s.name:<7} {pool}, {self.num_cpus:.2g} CPU{gpu}{batch}{note}: {io}"


class Stage:
    """Subclasses implement `process(batch)`; `__call__` also drops the columns no later stage reads.

    Which columns those are depends on the stages of the run, so the pipeline passes `drop`.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    outputs: ClassVar[tuple[str, ...]]
    nice: int = 0  # set by the pipeline on task stages that should give way to model actors

    def __init__(self, drop: Sequence[str] = ()):
        self.drop = tuple(drop)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        yield_to_models(self.nice)
        out = self.process(batch)
        return {k: v for k, v in out.items() if k not in self.drop}


def failed(value: object) -> bool:
    """Whether a row's `error` holds a reason. Ray may turn an all-null column into NaN floats."""
    return isinstance(value, str) and value != ""


def ok_rows(batch: dict[str, np.ndarray]) -> list[int]:
    return [i for i, err in enumerate(batch[ERROR]) if not failed(err)]


def per_item(fn: Callable[[Sequence[Any]], list[Any]], items: Sequence[Any]) -> tuple[list[Any], list[str | None]]:
    """Run `fn` on all items at once; if that fails, one by one, so only bad items fail.

    Returns the results (None for failed items) and the per-item error reasons.
    """
    try:
        return list(fn(items)), [None] * len(items)
    except Exception:
        pass
    results: list[Any] = []
    errors: list[str | None] = []
    for item in items:
        try:
            results.append(fn([item])[0])
            errors.append(None)
        except Exception as exc:
            results.append(None)
            errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    return results, errors


def predict_rows(
    batch: dict[str, np.ndarray], rows: list[int], fn: Callable, items: Sequence[Any], empty: Any, stage: str
) -> tuple[list[Any], np.ndarray]:
    """`fn` over the items of `rows` (failing items alone, see `per_item`).

    Returns one value per row of the batch (`empty` where not run or failed) and the batch's error
    column with `stage: reason` added for the rows that failed.
    """
    results, errors = per_item(fn, items)
    values = [empty] * len(batch[ERROR])
    failures = np.array(batch[ERROR], dtype=object)
    for i, value, err in zip(rows, results, errors, strict=True):
        if err is None:
            values[i] = value
        else:
            failures[i] = f"{stage}: {err}"
    return values, failures


class PerThread:
    """One instance per calling thread, made on its first call: a model whose forward pass keeps
    state on its modules (torchvision's RAFT stores its correlation pyramid on one) cannot serve
    an actor's concurrent calls from a single copy. Depth Anything can, and shares one."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory, self._local = factory, threading.local()

    def get(self) -> Any:
        if not hasattr(self._local, "value"):
            self._local.value = self._factory()
        return self._local.value


def lazy_builders(names: Sequence[str], ops: Callable[[], Any]) -> dict[str, Callable[[str], None]]:
    """`materialize` builders for the smoke models `names` of an ops module (`ops()` returns it, with
    its `RANDOM_BUILDERS`), imported only when a node builds one: after that, it is on disk."""
    return {name: (lambda folder, name=name: ops().RANDOM_BUILDERS[name](folder)) for name in names}


@contextmanager
def loading(what: str) -> Iterator[None]:
    """Around an actor's model load: any failure becomes one `ModelLoadError` line naming `what`,
    which ends the run (`enrich.pipeline.execute`)."""
    try:
        yield
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{what} cannot be loaded: {reason}") from None


def use_threads(threads: int | None) -> None:
    """Torch threads of a CPU actor (Ray would leave it one; see `enrich.pipeline.stage_plans`)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def column(arrays: list[np.ndarray]) -> np.ndarray:
    """A column of per-row arrays: stacked when shapes agree, else an object array (ragged)."""
    if arrays and all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out
