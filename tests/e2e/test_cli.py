"""The real command in its own process, with its own embedded Ray, as a user runs it."""

import subprocess
import sys

import pytest

from tests.e2e.conftest import read_table

pytestmark = pytest.mark.slow


def test_enrich_run_command(fixtures_dir, tiny_depth_model, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "enrich",
        "run",
        str(fixtures_dir / "tiny_2fps.mp4"),
        str(out),
        "--depth-model",
        str(tiny_depth_model),
        "--fps",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 clips ok, 0 failed, 0 up to date; 4 frames written" in proc.stdout
    assert "progress:" in proc.stderr or "plan: 1 to process (1 new)" in proc.stderr
    assert read_table(out / "frames")["clip_id"].to_pylist() == ["tiny_2fps.mp4"] * 4
