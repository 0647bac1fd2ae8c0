"""The supervisor's one line for a driver that died under its run, from what the driver reported."""

from __future__ import annotations

import subprocess
import sys

from enrich import supervise


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_driver_ended_by_ray_during_an_outage_leads_with_the_outage(tmp_path, monkeypatch):
    monkeypatch.setattr(supervise, "WORKER_GRACE_S", 0.0)
    staging = tmp_path / "out" / "_staging" / "run-1"
    staging.mkdir(parents=True)
    (staging / "part-0").write_bytes(b"staged")
    reports = {
        "staging": str(staging),
        "staging_root": str(staging.parent),
        "raylet_pid": dead_pid(),
        "ray_logs": "/tmp/ray/session_x/logs",
        "committed": 2,
        "outage": "S3 at http://127.0.0.1:9 is unreachable",
    }
    line = supervise._died(1, reports)
    assert line.startswith("S3 at http://127.0.0.1:9 is unreachable; then the run's driver was ended by Ray"), line
    assert "/tmp/ray/session_x/logs" in line, line
    assert "2 clips committed by this run are kept" in line, line
    assert line.endswith("run the same command again to resume"), line
    assert not staging.exists()  # its staging is removed


def test_a_driver_that_died_on_its_own_names_no_outage(tmp_path, monkeypatch):
    monkeypatch.setattr(supervise, "WORKER_GRACE_S", 0.0)
    line = supervise._died(-9, {"committed": 1})
    assert line.startswith("the run's driver was killed by SIGKILL (out of memory?)"), line
    assert "1 clip committed by this run is kept" in line, line


def test_what_is_back_in_a_finished_runs_staging_is_swept_once_its_ray_is_down(tmp_path, monkeypatch):
    monkeypatch.setattr(supervise, "WORKER_GRACE_S", 0.0)
    staging = tmp_path / "out" / "_staging" / "run-1"
    (staging / "clip-key").mkdir(parents=True)
    (staging / "clip-key" / ".tmp-0-part.parquet").write_bytes(b"half a part")
    (tmp_path / "out" / "clips.parquet").write_bytes(b"the manifest")
    reports = {"staging": str(staging), "staging_root": str(staging.parent), "raylet_pid": dead_pid(), "exit": 130}
    supervise._sweep(reports)
    assert not (tmp_path / "out" / "_staging").exists()
    assert (tmp_path / "out" / "clips.parquet").exists()


def test_a_clean_staging_costs_no_wait_and_an_outage_no_listing(tmp_path, monkeypatch):
    from enrich import storage

    waits, listings = [], []
    monkeypatch.setattr(supervise, "_wait_for_workers", waits.append)
    monkeypatch.setattr(storage, "list_uris", lambda prefix: listings.append(prefix) or [])
    supervise._sweep({"staging": str(tmp_path / "_staging" / "run-1"), "staging_root": str(tmp_path / "_staging")})
    supervise._sweep({"staging": "s3://nowhere-bucket/out/_staging/run-1", "staging_root": "", "outage": "S3 gone"})
    assert waits == [] and listings == []
