"""The commit of a clip holds one row group at a time, never the clip: its peak memory does not grow
with the clip's length. Each commit runs in a fresh process, whose peak RSS is the measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import stage_clip

FRAME_BYTES = 4 * 2**20  # a stand-in for a 4K frame's depth PNG (the commit never decodes it)

COMMIT = """
import json, sys
from enrich.manifest.commit import write_clip
from enrich.stages.temporal import FinishClip
import pytest

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak RSS (VmHWM) to the current RSS: the imports' peak is not counted
before = kib("VmRSS")
rows, figures, _ = write_clip(sys.argv[1], sys.argv[2], "clip", "run", True, FinishClip())
print(json.dumps({"rows": rows, "segments": figures["segments"], "growth_mib": (kib("VmHWM") - before) / 1024}))
"""


def commit_in_fresh_process(tmp_path, name: str, n_frames: int) -> dict:
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 2, (54, 96)).astype(np.float32)  # the size Summarize shrinks 4K maps to
    thumb = rng.integers(0, 255, (144, 256, 3)).astype(np.uint8)
    frames = [{"depth": depth * (1 + t / 100), "thumb": thumb, "depth_png": os.urandom(FRAME_BYTES)}
              for t in range(n_frames)]  # fmt: skip
    staging, output = tmp_path / name / "staging", tmp_path / name / "out"
    stage_clip(staging, "clip", frames, part_size=8, size=(2160, 3840))
    del frames
    proc = subprocess.run(
        [sys.executable, "-c", COMMIT, str(output), str(staging)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout)


@pytest.mark.slow  # ~18 s: two commits in fresh interpreters
def test_commit_memory_does_not_grow_with_the_clip(tmp_path):
    short = commit_in_fresh_process(tmp_path, "short", 24)  # 96 MiB of maps: more than one row group
    long = commit_in_fresh_process(tmp_path, "long", 192)  # 768 MiB of maps
    assert short["rows"] == 24 and long["rows"] == 192 and long["segments"] == 1
    frame_mib = FRAME_BYTES / 2**20
    assert long["growth_mib"] < 192 * frame_mib / 3, long  # the old commit held the clip several times over
    # What more frames cost is their small summaries (thumbnail, 96 px maps), not their maps.
    assert long["growth_mib"] - short["growth_mib"] < (192 - 24) * frame_mib / 8, (short, long)
