"""`enrich run --plan` in its own process, as a user runs it: it prints the plan and exits 0, every
time. No Ray: --plan stops before starting it.

Over an existing manifest, --plan used to abort at interpreter exit in most runs ("terminate called
without an active exception", exit 134): reading the clips table left work on Arrow's thread pool that
released a Python-owned buffer after the interpreter had begun to finalize.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from enrich import storage
from enrich.catalog import list_clips
from enrich.manifest import commit
from enrich.manifest.commit import clips_rows
from enrich.manifest.publish import Publisher

pytestmark = pytest.mark.slow

RUNS = 5
DEPTH_ONLY = ["--depth-model", "random:depth-anything-v2-small"]
SMOKE = [
    "--stages",
    "depth,flow,pose",
    "--depth-model",
    "random:depth-anything-v2-small",
    "--flow-model",
    "random:raft_small",
    "--pose-model",
    "random:vitpose-tiny",
    "--detector-model",
    "random:rtdetr-tiny",
]


def enrich(*args, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "enrich", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def assert_plan(proc: subprocess.CompletedProcess, first_line: str, clips: int) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == first_line
    graph = next(i for i, line in enumerate(lines) if line.startswith("operators"))
    assert graph == 1 + clips  # a line per clip, then the stage graph
    operators = [line.split()[0] for line in lines[graph + 1 :]]
    assert operators[0] == "decode" and operators[-1] == "write" and "depth" in operators


def test_plan_on_a_new_output_exits_0(fixtures_dir, tmp_path):
    clips = len(list_clips(str(fixtures_dir)))
    for i in range(3):
        proc = enrich("run", fixtures_dir, tmp_path / f"out{i}", *DEPTH_ONLY, "--plan")
        assert_plan(proc, f"plan: {clips} to process ({clips} new), 0 up to date", clips)
    assert not any((tmp_path / f"out{i}" / "clips").exists() for i in range(3))  # a plan writes nothing


def write_manifest(out, fixtures_dir) -> list:
    """A clips table in which every fixture clip went ok under an older config; returns the clips."""
    clips = list_clips(str(fixtures_dir))
    rows = [
        dict(clip_id=c.clip_id, clip_uri=c.clip_uri, size_bytes=c.size_bytes, etag=c.etag, status="ok",
             n_frames=1, config_hash="an older config", run_id="r0")
        for c in clips
    ]  # fmt: skip
    Publisher(str(out), "r0").publish_rows(clips_rows(rows))
    return clips


def test_plan_over_an_existing_manifest_exits_0_every_time(fixtures_dir, tmp_path):
    out = tmp_path / "out"
    clips = write_manifest(out, fixtures_dir)
    for i in range(RUNS):  # the abort was a race at exit: several tries, with one stage and all three
        proc = enrich("run", fixtures_dir, out, *(SMOKE if i == RUNS - 1 else DEPTH_ONLY), "--plan")
        assert_plan(proc, f"plan: {len(clips)} to process ({len(clips)} config), 0 up to date", len(clips))


def test_plan_of_a_missing_input_is_one_error_line(tmp_path):
    proc = enrich("run", tmp_path / "no-such-input", tmp_path / "out", *SMOKE, "--plan")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("enrich: error: "), proc.stderr


def test_plan_with_an_uncached_hub_model_offline_is_one_error_line(fixtures_dir, tmp_path):
    proc = enrich("run", fixtures_dir, tmp_path / "out", "--plan", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("enrich: error: cannot fetch model "), proc.stderr


def test_reading_the_clips_table_leaves_nothing_python_to_arrow_threads(fixtures_dir, tmp_path, monkeypatch):
    """The cause of the abort, checked in-process without depending on timing at exit.

    `pq.read_table` returns before Arrow's thread pool has released everything the read used
    (apache/arrow#33975). When that includes a Python object (an io.BytesIO or bytes source), its last
    release takes the GIL from an Arrow thread; at interpreter exit that thread is made to exit inside a
    C++ destructor and the process aborts. So whatever the clips table is read from must be Arrow's own
    memory (or a file Arrow opens itself): then nothing of the bytes read is left referenced once
    `read_clips` has returned.
    """
    out = tmp_path / "out"
    write_manifest(out, fixtures_dir)
    read, real_read_bytes = [], storage.read_bytes

    def read_bytes(uri: str) -> bytes:
        read.append(uri)
        return real_read_bytes(uri)

    monkeypatch.setattr(storage, "read_bytes", read_bytes)
    for _ in range(5):
        assert commit.read_clips(str(out)).num_rows == len(list_clips(str(fixtures_dir)))
    assert read == [], f"the clips table was read into Python bytes: {read}"  # Arrow opens its files itself
