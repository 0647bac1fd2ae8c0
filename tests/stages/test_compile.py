"""`--STAGE-compile`: torch.compile gives the eager model's outputs, and compiles once per input shape
(a clip's short last batch is padded to a power of two and reuses a graph). CPU inductor compiles
take a minute or more each on two cores, so this runs one model, at its real size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enrich.ops.common import pad_batch
from enrich.weights import ModelRef, materialize


def test_pad_batch_rounds_up_to_a_power_of_two_by_repeating_the_last_item():
    x = torch.arange(3 * 2).reshape(3, 2)
    n, (padded,) = pad_batch(True, x)
    assert n == 3 and padded.shape == (4, 2) and (padded[3] == x[2]).all() and (padded[:3] == x).all()
    assert pad_batch(True, x[:2])[1][0].shape == (2, 2) and pad_batch(True, x[:1])[1][0].shape == (1, 2)
    assert pad_batch(False, x)[1][0] is x  # uncompiled models see the batch as it is
    five = torch.arange(5 * 2).reshape(5, 2)
    assert pad_batch(True, five, cap=6)[1][0].shape == (6, 2)  # not 8: never past the stage's batch size
    assert pad_batch(True, five, cap=16)[1][0].shape == (8, 2) and pad_batch(True, five, cap=5)[1][0] is five
    assert pad_batch(True, x[:0])[1][0].shape == (0, 2)


@pytest.mark.slow
def test_compiled_depth_matches_eager_and_compiles_once_per_shape(fixtures_dir):
    import av
    from torch._dynamo.utils import counters

    from enrich.stages.depth.model import RANDOM_BUILDERS, DepthEstimator

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


@pytest.mark.slow
def test_compiled_raft_and_vitpose_match_eager(fixtures_dir, tmp_path):
    import av

    from enrich.stages.flow.model import FlowEstimator, build_random
    from enrich.stages.pose.model import PoseEstimator, build_random_rtdetr, build_random_vitpose

    with av.open(str(fixtures_dir / "tokyo_walk.mp4")) as container:
        decoded = container.decode(video=0)
        frames = [next(decoded).to_ndarray(format="rgb24") for _ in range(3)]
    small = [frame[::4, ::4][:176, :320] for frame in frames]
    pairs = [(small[0], small[1]), (small[1], small[2]), (small[0], small[2])]  # 3: padded to 4
    build_random("raft_small", str(tmp_path / "raft.pt"))
    flow = {
        compile: FlowEstimator("raft_small", str(tmp_path / "raft.pt"), "cpu", 3, "fp32", compile).predict(pairs)
        for compile in (False, True)
    }
    for a, b in zip(flow[False], flow[True], strict=True):
        assert np.median(np.linalg.norm(a, axis=-1)) > 0.5  # pixels of flow, not noise
        assert np.abs(a - b).max() < 1e-3

    build_random_vitpose(str(tmp_path / "vitpose"), "tiny")
    build_random_rtdetr(str(tmp_path / "rtdetr"), "tiny")
    people = {
        compile: PoseEstimator(str(tmp_path / "vitpose"), str(tmp_path / "rtdetr"), compile=compile).predict(frames)
        for compile in (False, True)
    }
    assert sum(map(len, people[False])) >= 5
    for eager, compiled in zip(people[False], people[True], strict=True):
        assert [p["bbox"] for p in eager] == [p["bbox"] for p in compiled]  # the detector is not compiled
        for a, b in zip(eager, compiled, strict=True):
            points = [np.array([[k["x"], k["y"]] for k in person["keypoints"]]) for person in (a, b)]
            # float32 sums in another order: they differed by 0.014 px on an AMD EPYC host
            assert np.abs(points[0] - points[1]).max() < 0.05
