"""Problems the user can fix fail before any work: one line on stderr, exit code 2, no traceback.

These run the real `enrich` command in a subprocess, as a user would."""

import os
import subprocess
import sys
import time

import pytest

from enrich.errors import EXIT_CANNOT_RUN

pytestmark = pytest.mark.slow


def enrich(*args, env=None, timeout=120):
    full_env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "enrich", "run", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr.strip(), time.monotonic() - started


def assert_one_line(code, stderr, expected):
    assert code == EXIT_CANNOT_RUN, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("enrich: error")]
    assert len(lines) == 1 and expected in lines[0], stderr


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--fps", "-1"], "--fps must be > 0"),
        (["--depth-precision", "fp8"], "invalid choice"),
        (["--max-frames-per-clip", "x"], "invalid int value"),
        (["--depth-model", "/nonexistent/model"], "model folder not found"),
        (["--depth-model", "random:nope"], "unknown smoke model"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
        (["--flow-model", "raft_small"], "flow_model is an option of the flow stage, which is not in --stages"),
        (["--stages", "depth,normals"], "--stages takes a comma-separated subset"),
        (["--stages", "flow", "--flow-precision", "fp16"], "--flow-precision: invalid choice: 'fp16'"),
        (["--stages", "pose", "--detector-threshold", "2"], "--detector-threshold must be between 0 and 1"),
    ],
)
def test_bad_options(fixtures_dir, tmp_path, extra, expected):
    code, _, stderr, _ = enrich(fixtures_dir / "tiny_2fps.mp4", tmp_path / "out", *extra)
    assert_one_line(code, stderr, expected)


def test_hub_model_unreachable_says_so(fixtures_dir, tmp_path):
    code, _, stderr, _ = enrich(fixtures_dir, tmp_path / "out", env={"HF_HUB_OFFLINE": "1"})
    assert_one_line(code, stderr, "cannot fetch model 'depth-anything/Depth-Anything-V2-Small-hf'")
    assert "random:depth-anything-v2-small" in stderr


def test_model_folder_without_weights(fixtures_dir, tmp_path, tiny_depth_model):
    broken = tmp_path / "noweights"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_depth_model / "config.json").read_text())
    code, _, stderr, _ = enrich(fixtures_dir, tmp_path / "out", "--depth-model", broken)
    assert_one_line(code, stderr, "has no weights")


def test_weights_that_do_not_match_their_config_stop_the_run(fixtures_dir, tmp_path, tiny_depth_model):
    """The one failure found in the model actors, not on the driver: still one line, exit 2, and
    nothing committed."""
    import json
    import shutil

    broken = tmp_path / "mismatched"
    shutil.copytree(tiny_depth_model, broken)
    config = json.loads((broken / "config.json").read_text())
    config["fusion_hidden_size"] = 24  # the saved weights were built with 16
    (broken / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    code, _, stderr, _ = enrich(fixtures_dir / "tiny_2fps.mp4", out, "--depth-model", broken)
    assert_one_line(code, stderr, f"depth model {broken} cannot be loaded: weights do not match the config")
    assert "mismatched keys" in stderr and "saved as" in stderr
    assert not (out / "frames").exists() and not (out / "clips").exists()


def test_missing_input_and_empty_input(tmp_path, tiny_depth_model):
    code, _, stderr, _ = enrich(tmp_path / "nope", tmp_path / "out", "--depth-model", tiny_depth_model)
    assert_one_line(code, stderr, "input does not exist")
    (tmp_path / "empty").mkdir()
    code, _, stderr, _ = enrich(tmp_path / "empty", tmp_path / "out", "--depth-model", tiny_depth_model)
    assert_one_line(code, stderr, "no video files under")


def test_unwritable_output(fixtures_dir, tmp_path, tiny_depth_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr, _ = enrich(fixtures_dir, blocker / "out", "--depth-model", tiny_depth_model)
    assert_one_line(code, stderr, "cannot write to output")


def test_missing_bucket(s3_endpoint, tmp_path, tiny_depth_model):
    code, _, stderr, _ = enrich("s3://no-such-bucket-enrich/clips", tmp_path / "out", "--depth-model", tiny_depth_model)
    assert_one_line(code, stderr, "bucket does not exist: s3://no-such-bucket-enrich/clips")


def test_unreachable_endpoint(tmp_path, tiny_depth_model):
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
    }
    code, _, stderr, seconds = enrich("s3://bucket/clips", tmp_path / "out", "--depth-model", tiny_depth_model, env=env)
    assert_one_line(code, stderr, "cannot reach http://127.0.0.1:9")
    assert seconds < 60


def test_no_credentials(s3_endpoint, tmp_path, tiny_depth_model):
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    code, _, stderr, _ = enrich("s3://bucket/clips", tmp_path / "out", "--depth-model", tiny_depth_model, env=env)
    assert_one_line(code, stderr, "no AWS credentials found")


def test_bad_credentials(tmp_path, tiny_depth_model):
    """A second moto server with authentication on: unknown keys are refused, as by AWS."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
            "AWS_SECRET_ACCESS_KEY": "wrong",
            "AWS_REGION": "us-east-1",
        }
        code, _, stderr, _ = enrich("s3://bucket/clips", tmp_path / "out", "--depth-model", tiny_depth_model, env=env)
        assert_one_line(code, stderr, "bad AWS credentials")
        assert "wrong" not in stderr.replace("bad AWS credentials", "")
    finally:
        server.terminate()
        server.wait(timeout=10)
