"""RAFT flow against torchvision's own reference usage, on real frames, without Ray."""

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

from enrich.stages.flow.model import FlowEstimator, build_random, load_raft

UPDATES = 7  # not the default 12, so an ignored num_updates shows up


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("raft") / "raft_small.pt"
    build_random("raft_small", str(path))
    return path


@pytest.fixture(scope="module")
def estimator(small_weights):
    return FlowEstimator("raft_small", str(small_weights), device="cpu", num_updates=UPDATES)


@pytest.fixture(scope="module")
def portrait(fixtures_dir):
    """Four consecutive frames at 320 high x 240 wide: halved, still multiples of 8 and >= 128."""
    import decord

    reader = decord.VideoReader(str(fixtures_dir / "portrait_with_audio.mp4"))
    return [reader[i].asnumpy()[::2, ::2] for i in range(4)]


@pytest.fixture(scope="module")
def tiny(fixtures_dir):
    """Two frames of 180 x 320: 180 is not a multiple of 8."""
    import decord

    reader = decord.VideoReader(str(fixtures_dir / "tiny_2fps.mp4"))
    return [reader[i].asnumpy() for i in range(2)]


def reference(weights_path, first, second):
    """torchvision's documented usage: the weights' transforms, then the last of the model's predictions."""
    model = raft_small()
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    model.eval()
    batch = [torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None] for frame in (first, second)]
    first, second = Raft_Small_Weights.DEFAULT.transforms()(*batch)
    with torch.inference_mode():
        return model(first, second, num_flow_updates=UPDATES)[-1][0].permute(1, 2, 0).numpy()


def edge_padded_reference(weights_path, first, second, target):
    """Reference on frames padded by hand (edge = replicate, split evenly), cropped back."""
    pads = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(first.shape[:2], target, strict=True)]
    padded = [np.pad(frame, [*pads, (0, 0)], mode="edge") for frame in (first, second)]
    flow = reference(weights_path, *padded)
    (top, _), (left, _) = pads
    return flow[top : top + first.shape[0], left : left + first.shape[1]]


def test_equals_torchvision_reference(estimator, small_weights, portrait):
    first, second = portrait[0], portrait[1]
    assert first.shape == (320, 240, 3)
    flow = estimator.predict([(first, second)])[0]
    expected = reference(small_weights, first, second)
    assert flow.shape == (320, 240, 2) and flow.dtype == np.float32
    assert flow.std() > 0.1  # random weights still give a non-trivial field
    assert np.abs(flow - expected).max() < 1e-4


def test_odd_sizes_are_padded_not_resized(estimator, small_weights, tiny):
    first, second = tiny
    assert first.shape == (180, 320, 3)
    flow = estimator.predict([(first, second)])[0]
    assert flow.shape == (180, 320, 2)
    assert np.abs(flow - edge_padded_reference(small_weights, first, second, (184, 320))).max() < 1e-4


def test_frames_below_the_pyramid_minimum_are_padded_to_128(estimator, small_weights, tiny):
    first, second = tiny[0][:20, :30], tiny[1][:20, :30]
    flow = estimator.predict([(first, second)])[0]
    assert flow.shape == (20, 30, 2) and np.isfinite(flow).all()
    assert np.abs(flow - edge_padded_reference(small_weights, first, second, (128, 128))).max() < 1e-4


def test_batched_equals_one_by_one_in_input_order(estimator, portrait, tiny):
    pairs = [(portrait[0], portrait[1]), tuple(tiny), (portrait[1], portrait[2]), (portrait[2], portrait[3])]
    batched = estimator.predict(pairs)
    for pair, flow in zip(pairs, batched, strict=True):
        alone = estimator.predict([pair])[0]
        assert flow.shape == alone.shape
        assert np.abs(flow - alone).max() < 1e-4


def test_pair_of_different_sizes_is_refused(estimator, portrait, tiny):
    with pytest.raises(ValueError, match="pair 0"):
        estimator.predict([(portrait[0], tiny[0])])


def test_load_raft_accepts_matching_weights(small_weights):
    assert not load_raft("raft_small", str(small_weights)).training


def test_load_raft_refuses_the_other_arch(tmp_path, small_weights):
    large = tmp_path / "raft_large.pt"
    build_random("raft_large", str(large))
    with pytest.raises(ValueError, match=r"do not match raft_small: \d+ keys missing, \d+ unexpected") as error:
        load_raft("raft_small", str(large))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="do not match raft_large"):
        load_raft("raft_large", str(small_weights))


def test_load_raft_refuses_missing_garbage_and_unknown(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for path, message in ((tmp_path / "nope.pt", "not found"), (garbage, "cannot read")):
        with pytest.raises(ValueError, match=message) as error:
            load_raft("raft_small", str(path))
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown RAFT architecture 'raft_tiny'"):
        load_raft("raft_tiny", None)
