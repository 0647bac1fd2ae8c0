"""Shared fixtures, in tiers: fixture clips and generated edge cases; tiny real-architecture models
saved to disk; one moto S3 server on 127.0.0.1 (a real HTTP endpoint, in its own process); one
local Ray for the whole session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (ROOT.parent / "shared" / "fixtures" / "videos").resolve()

# Test credentials: distinctive so the leak test can look for them in every output.
FAKE_KEY_ID = "AKIAENRICHTESTKEY0001"
FAKE_SECRET = "enrich-test-secret-do-not-leak-4f1c"


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"fixture clips not found at {FIXTURES} (expected ../shared beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("enrich-cache")
    os.environ["ENRICH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_depth_model(tmp_path_factory) -> Path:
    """Depth Anything with a tiny random DINOv2 backbone, saved like a real checkpoint."""
    from tests.helpers import save_tiny_depth_anything

    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-anything"))


@pytest.fixture(scope="session")
def tiny_raft(tmp_path_factory) -> Path:
    """A state dict of torchvision's raft_small with seeded random weights (the real architecture)."""
    from enrich.stages.flow.model import build_random

    path = tmp_path_factory.mktemp("tiny-raft") / "raft_small.pt"
    build_random("raft_small", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_pose_models(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny random ViTPose and RT-DETR (the real classes and processors), saved like checkpoints."""
    from enrich.stages.pose.model import build_random_rtdetr, build_random_vitpose

    pose, detector = tmp_path_factory.mktemp("tiny-vitpose"), tmp_path_factory.mktemp("tiny-rtdetr")
    build_random_vitpose(str(pose), size="tiny")
    build_random_rtdetr(str(detector), size="tiny")
    return pose, detector


@pytest.fixture(scope="session")
def tiny_metric_model(tmp_path_factory) -> Path:
    from tests.helpers import save_tiny_depth_anything

    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-depth-metric"), metric=True)


@pytest.fixture(scope="session")
def bad_clips(tmp_path_factory, fixtures_dir) -> Path:
    """A folder of every kind of bad input, beside one good clip."""
    from tests.helpers import write_bad_clips

    return write_bad_clips(tmp_path_factory.mktemp("bad-clips"), fixtures_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server as a separate process; the AWS settings point every process at it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto S3 server did not start")
            time.sleep(0.2)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3(s3_endpoint):
    import boto3

    return boto3.client("s3")


@pytest.fixture(scope="session")
def ray_session(s3_endpoint, cache_dir):
    """One local Ray for all end-to-end tests; started after the AWS settings so workers see them."""
    import ray

    from enrich.runtime import init_ray

    init_ray(None)
    yield ray
    ray.shutdown()
