"""Runs submitted as Ray jobs: a real head (`ray start --head` on 127.0.0.1, with its dashboard and
Jobs API) started by the test, clips and model read from moto's S3 server and manifests written
back to it, through `enrich submit` and `enrich jobs` run as a user runs them (subprocesses).

The head gets the AWS settings from its environment, as a cluster node gets them from its role:
nothing about credentials travels with the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.conftest import FAKE_KEY_ID, FAKE_SECRET, ROOT, _free_port
from tests.e2e.conftest import read_table
from tests.e2e.test_s3 import upload_folder

pytestmark = pytest.mark.slow


TOKEN = f"enrich-test-{uuid.uuid4().hex}"
# Ray >= 2.59 turns token authentication on for local clusters: the head and its clients share one.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def ray_head(s3_endpoint, cache_dir):
    """A second, separate Ray cluster: its own ports and temp dir, so the session's Ray is untouched."""
    pytest.importorskip("aiohttp", reason="the Jobs API needs ray[default]")
    ports = {
        name: _free_port()
        for name in (
            "port",
            "dashboard-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "node-manager-port",
            "object-manager-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "ray-client-server-port",
        )
    }
    temp = tempfile.mkdtemp(prefix="eray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
        "--num-cpus",
        "2",
        "--disable-usage-stats",
        "--temp-dir",
        temp,
        *[f"--{name}={port}" for name, port in ports.items()],
    ]
    log = open(os.path.join(temp, "ray-start.log"), "w")
    env = {**os.environ, **AUTH, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        _wait_for_jobs_api(address, proc, temp)
        yield address
    finally:
        _stop_running_jobs(address)  # job drivers run in sessions of their own, outside the group below
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)  # it may hang in its own SIGTERM handler; the group is killed below
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the head left behind in its group
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def jobs_client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers={"Authorization": f"Bearer {TOKEN}"})


def _stop_running_jobs(address: str) -> None:
    try:
        api = jobs_client(address)
        running = [j.submission_id for j in api.list_jobs() if str(j.status) in ("PENDING", "RUNNING")]
        for job_id in running:
            api.stop_job(job_id)
        deadline = time.time() + 30
        while running and time.time() < deadline:
            running = [j for j in running if str(api.get_job_status(j)) in ("PENDING", "RUNNING")]
            time.sleep(1)
    except Exception:
        pass


def _wait_for_jobs_api(address: str, proc, temp: str) -> None:
    import urllib.request

    deadline = time.time() + 120
    while True:
        try:
            request = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {TOKEN}"})
            urllib.request.urlopen(request, timeout=5).read()
            return
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                with open(os.path.join(temp, "ray-start.log")) as f:
                    pytest.fail(f"ray start --head did not come up:\n{f.read()[-3000:]}")
            time.sleep(1)


def enrich(*args, wait: bool = True, auth: bool = True):
    """`enrich ...` as a user runs it; with the cluster's token unless `auth` is False."""
    cmd = [sys.executable, "-m", "enrich", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in AUTH} | (AUTH if auth else {"RAY_AUTH_MODE": "disabled"})
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc.communicate(timeout=600) + (proc.returncode,) if wait else proc


def finish(proc) -> tuple[str, str, int]:
    out, err = proc.communicate(timeout=600)
    return out, err, proc.returncode


@pytest.fixture
def catalogue(s3, fixtures_dir, tiny_depth_model):
    bucket = f"jobs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(fixtures_dir / "tiny_2fps.mp4"), bucket, "clips/a.mp4")
    s3.upload_file(str(fixtures_dir / "one_fps_stills.mp4"), bucket, "clips/b.mp4")
    upload_folder(s3, bucket, tiny_depth_model, "models/tiny")
    return bucket


def test_two_submitted_runs_at_once_one_runs_one_refuses_then_a_scheduled_one_has_nothing_to_do(
    ray_head, catalogue, s3
):
    clips, out = f"s3://{catalogue}/clips", f"s3://{catalogue}/manifests"
    options = ["--depth-model", f"s3://{catalogue}/models/tiny", "--fps", 1, "--max-frames-per-clip", 2]
    first = enrich("submit", "--address", ray_head, "--wait", clips, out, *options, wait=False)
    second = enrich("submit", "--address", ray_head, "--wait", clips, out, *options, wait=False)
    results = [finish(first), finish(second)]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results  # truly concurrent: one took OUTPUT's lock, the other refused
    winner = next(r for r in results if r[2] == 0)
    loser = next(r for r in results if r[2] == 2)
    assert "2 clips ok, 0 failed" in winner[0], winner
    assert "is held by another run" in loser[0] + loser[1], loser
    frames = read_table(f"{out}/frames").to_pylist()
    assert sorted((f["clip_id"], f["frame_index"]) for f in frames) == [
        ("a.mp4", 0),
        ("a.mp4", 2),
        ("b.mp4", 0),
        ("b.mp4", 1),
    ]

    # The scheduled entry point: nothing new, exits 0, refreshes the report.
    stdout, stderr, code = enrich("submit", "--address", ray_head, "--wait", "--scheduled", clips, out, *options)
    assert code == 0, stdout + stderr
    assert "0 to process" in stdout and f"report: {out}/report.html" in stdout
    assert s3.head_object(Bucket=catalogue, Key="manifests/report.html")["ContentLength"] > 1000

    job_ids = [line.split()[0] for line in (winner[0], loser[0], stdout)]
    stdout, stderr, code = enrich("jobs", "list", "--address", ray_head)
    assert code == 0, stderr
    listed = {line.split()[0]: line.split()[1] for line in stdout.splitlines()[1:]}
    assert sorted(listed[j] for j in job_ids) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    stdout, _, code = enrich("jobs", "status", "--address", ray_head, job_ids[1])
    assert code == 0 and "FAILED" in stdout and "exit code 2" in stdout, stdout
    stdout, _, code = enrich("jobs", "logs", "--address", ray_head, job_ids[1])
    assert code == 0 and "is held by another run" in stdout

    # Nothing about credentials went into the jobs (runtime environments, metadata) or their logs.
    api = jobs_client(ray_head)
    for job_id in job_ids:
        text = repr(api.get_job_info(job_id)) + api.get_job_logs(job_id)
        assert "enrich-run.json" in text and "py_modules" in text  # the runtime env is in what was read
        assert FAKE_SECRET not in text and FAKE_KEY_ID not in text and "AWS_ACCESS_KEY_ID" not in text


def test_a_failing_job_and_stop_and_bad_addresses(ray_head, catalogue, s3, fixtures_dir, tmp_path):
    # A job whose run cannot start (a model that does not exist on the cluster): the run's own exit code.
    stdout, stderr, code = enrich(
        "submit",
        "--address",
        ray_head,
        "--wait",
        f"s3://{catalogue}/clips",
        f"s3://{catalogue}/m2",
        "--depth-model",
        f"s3://{catalogue}/models/none",
    )
    assert code == 2, stdout + stderr
    assert "models/none has no config.json" in stdout, stdout

    # Bad options never reach the cluster.
    stdout, stderr, code = enrich("submit", "--address", ray_head, "in", "out", "--fps", "-1")
    assert code == 2 and stderr.count("\n") == 1 and "fps" in stderr, stderr
    env = tmp_path / "env.yaml"
    env.write_text(f"env_vars:\n  AWS_SECRET_ACCESS_KEY: {FAKE_SECRET}\n")
    stdout, stderr, code = enrich("submit", "--address", ray_head, "--runtime-env", env, "in", "out")
    assert code == 2 and "AWS_SECRET_ACCESS_KEY" in stderr and FAKE_SECRET not in stderr, stderr

    # Stop: a long job (all 240 frames of a 10 s clip) is stopped while it runs. Its prefix has a
    # space and a quote, which the job's command line must carry intact.
    s3.upload_file(str(fixtures_dir / "sintel_scene_cuts_10s.mp4"), catalogue, "long clips/it's.mp4")
    job = enrich(
        "submit",
        "--address",
        ray_head,
        f"s3://{catalogue}/long clips",
        f"s3://{catalogue}/m3",
        "--depth-model",
        f"s3://{catalogue}/models/tiny",
    )
    job_id = job[0].split()[0]
    api, deadline = jobs_client(ray_head), time.time() + 180
    while "plan: 1 to process (1 new)" not in api.get_job_logs(job_id):  # it read the quoted prefix
        assert time.time() < deadline and str(api.get_job_status(job_id)) in ("PENDING", "RUNNING"), api.get_job_logs(
            job_id
        )[-2000:]
        time.sleep(1)
    stdout, stderr, code = enrich("jobs", "stop", "--address", ray_head, job_id)
    assert code == 0 and "stop requested" in stdout, stdout + stderr
    stdout, stderr, code = enrich("jobs", "logs", "--follow", "--address", ray_head, job_id)
    assert code == 130 and "was stopped" in stderr, stdout + stderr

    # Without the cluster's token, an unreachable cluster, an unknown job: one line, exit 2.
    import ray
    from packaging.version import Version

    if Version(ray.__version__) >= Version("2.52"):  # token authentication exists from Ray 2.52
        stdout, stderr, code = enrich("jobs", "list", "--address", ray_head, auth=False)
        assert code == 2 and "RAY_AUTH_TOKEN" in stderr and stderr.count("\n") == 1, stderr
    dead = f"http://127.0.0.1:{_free_port()}"
    for args in (
        ("jobs", "list", "--address", dead),
        ("submit", "--address", dead, "in", "out"),
        ("jobs", "status", "--address", ray_head, "raysubmit_nope"),
    ):
        stdout, stderr, code = enrich(*args)
        assert code == 2 and stderr.startswith("enrich: error: ") and stderr.count("\n") == 1, (args, stderr)
