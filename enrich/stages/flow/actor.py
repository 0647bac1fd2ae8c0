"""Flow: a pool of actors running torchvision's RAFT on each frame and its successor in the clip,
then a CPU stage that stores each field as a KITTI 16-bit PNG.

Pairs come from decode (`next_frame`), so they never cross clips. The clip's last sampled frame has
no successor: its flow is empty and stored as null, which is not an error.
"""

from __future__ import annotations

import os

import numpy as np

from enrich.errors import UsageError
from enrich.ops.flowpng import encode_flow_png
from enrich.stages.base import (
    ERROR,
    PerThread,
    Stage,
    column,
    loading,
    ok_rows,
    predict_rows,
    use_threads,
)
from enrich.weights import ModelRef, materialize, resolve_file

WEIGHTS_FILE = "weights.pt"  # inside a random smoke model's cache folder
ARCHS = ("raft_large", "raft_small")


def _ops():
    """The model code, imported only where a model runs: the encoder's workers skip torch (~3 s)."""
    from enrich.stages.flow import model

    return model


RANDOM_BUILDERS = {
    arch: (lambda folder, arch=arch: _ops().build_random(arch, os.path.join(folder, WEIGHTS_FILE))) for arch in ARCHS
}


def resolve_flow(spec: str) -> ModelRef:
    """`raft_large`, `raft_small`, `ARCH:PATH` (local or s3:// state dict) or `random:ARCH`."""
    if spec.startswith("random:"):
        arch = spec[len("random:") :]
        _known(arch, spec)
        return ModelRef(spec, "random", arch, "seed0")
    arch, _, path = spec.partition(":")
    _known(arch, spec)
    if path:
        return resolve_file(spec, path)
    from torchvision.models import optical_flow

    weights = getattr(optical_flow, f"Raft_{arch.split('_')[1].title()}_Weights").DEFAULT
    return ModelRef(spec, "torchvision", arch, str(weights))


def _known(arch: str, spec: str) -> None:
    if arch not in ARCHS:
        raise UsageError(
            f"unknown flow model {spec!r} (use {' or '.join(ARCHS)}, optionally ARCH:PATH, or random:ARCH)"
        )


def arch_and_weights(ref: ModelRef) -> tuple[str, str | None]:
    """The architecture, and a local state-dict file (None: torchvision's published weights)."""
    if ref.kind == "torchvision":
        return ref.location, None
    if ref.kind == "random":
        return ref.location, os.path.join(materialize(ref, RANDOM_BUILDERS), WEIGHTS_FILE)
    return ref.spec.split(":", 1)[0], materialize(ref, {})


class Flow(Stage):
    name = "flow"
    inputs = ("frame", "next_frame", ERROR)
    outputs = ("flow", "flow_back", ERROR)

    def __init__(
        self,
        model: ModelRef,
        updates: int = 12,
        backward: bool = True,
        precision: str = "auto",
        compile: bool = False,
        threads: int | None = None,
        batch_size: int | None = None,
        drop=(),
    ):
        super().__init__(drop)
        use_threads(threads)
        with loading(f"flow model {model.spec}"):
            weights = arch_and_weights(model)
            options = dict(num_updates=updates, precision=precision, compile=compile, batch_size=batch_size)
            self.estimator = PerThread(lambda: _ops().FlowEstimator(*weights, **options))
            self.estimator.get()  # load (and fail) at actor start, not on the first frame
        self.backward = backward

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [i for i in ok_rows(batch) if batch["next_frame"][i].size]  # a clip's last frame has no pair
        pairs = [(batch["frame"][i], batch["next_frame"][i]) for i in rows]
        empty = np.zeros((0, 0, 2), dtype=np.float32)
        fields, failures = predict_rows(batch, rows, self._predict, pairs, (empty, empty), "flow")
        return {
            **batch,
            "flow": column([f for f, _ in fields]),
            "flow_back": column([b for _, b in fields]),
            ERROR: failures,
        }

    def _predict(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(forward, backward) per pair. The backward pass is a second batch of the same size, so
        memory per batch does not grow with it."""
        estimator = self.estimator.get()
        forward = estimator.predict(pairs)
        if not self.backward:
            return [(f, np.zeros((0, 0, 2), dtype=np.float32)) for f in forward]
        backward = estimator.predict([(b, a) for a, b in pairs])
        return list(zip(forward, backward, strict=True))


class EncodeFlow(Stage):
    name = "encode-flow"
    inputs = ("flow", ERROR)
    outputs = ("flow_png",)

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # b"" (the writer stores null: no next frame), not None: a block whose rows all lack flow
        # would otherwise get a column Ray types as float, which no longer merges with the others.
        pngs = np.array([b""] * len(batch[ERROR]), dtype=object)
        for i in ok_rows(batch):
            if batch["flow"][i].size:
                pngs[i] = encode_flow_png(batch["flow"][i])
        return {**batch, "flow_png": pngs}


def check_weights(refs: dict[str, ModelRef]) -> None:
    """The weights of a state dict are checked where they load (the actors); torchvision's published
    ones are fetched here, once, rather than by every actor at once."""
    arch, weights = arch_and_weights(refs["model"])
    if weights is None:
        try:
            _ops().load_raft(arch, None)
        except Exception as exc:
            raise ValueError(
                f"cannot fetch torchvision's {arch} weights ({type(exc).__name__}); "
                f"pass {arch}:PATH to a state dict (local or s3://)"
            ) from None
