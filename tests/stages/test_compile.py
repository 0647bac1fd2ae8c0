"""`--STAGE-compile`: torch.compile gives the eager model's outputs, and compiles once per input shape
(a clip's short last batch is padded to a power of two and reuses a graph). CPU inductor compiles
take a minute or more each on two cores, so this runs one model, at its real size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enrich.models import ModelRef, materialize
from enrich.ops.common import pad_batch


def test_pad_batch_rounds_up_to_a_power_of_two_by_repeating_the_last_item():
    x = torch.arange(3 * 2).reshape(3, 2)
    n, (padded,) = pad_batch(True, x)
    assert n == 3 and padded.shape == (4, 2) and (padded[3] == x[2]).all() and (padded[:3] == x).all()
    assert pad_batch(True, x[:2])[1][0].shape == (2, 2) and pad_batch(True, x[:1])[1][0].shape == (1, 2)
    assert pad_batch(False, x)[1][0] is x  # uncompiled models see the batch as it is


@pytest.mark.slow
def test_compiled_depth_matches_eager_and_compiles_once_per_shape(fixtures_dir):
    import av
    from torch._dynamo.utils import counters

    from enrich.ops.depth import RANDOM_BUILDERS, DepthEstimator

    with av.open(str(fixtures_dir / "tokyo_walk.mp4")) as container:
        decoded = container.decode(video=0)
        frames = [next(decoded).to_ndarray(format="rgb24")[::4, ::4] for _ in range(4)]
    ref = ModelRef("random:depth-anything-v2-small", "random", "depth-anything-v2-small", "seed0")
    folder = materialize(ref, RANDOM_BUILDERS)
    eager = DepthEstimator(folder, device="cpu", precision="fp32").predict(frames)
    compiled = DepthEstimator(folder, device="cpu", precision="fp32", compile=True)
    torch._dynamo.reset()
    counters.clear()
    three = compiled.predict(frames[:3])  # padded to 4: one graph
    four = compiled.predict(frames)  # the same shape: no new graph
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    for a, b in zip(eager, four, strict=True):
        spread = np.percentile(a, 99) - np.percentile(a, 1)
        assert spread > 1e4 * np.finfo(np.float32).eps * np.abs(a).max()  # a map, not float noise
        assert np.abs(a - b).max() < 1e-3 * spread
    for a, b in zip(eager[:3], three, strict=True):
        assert np.abs(a - b).max() < 1e-3 * (np.percentile(a, 99) - np.percentile(a, 1))
