"""`enrich submit` and `enrich jobs`: runs as Ray jobs, through the Jobs API of a cluster's head.

A submitted run is `jobs/enrich_job.py` (or `jobs/reenrich.py` with `--scheduled`) executed on the
cluster with a runtime environment holding this checkout's `enrich` package and the job entry
points, so the cluster runs exactly the code that submitted it; its dependencies are the cluster's
own (the image that `cluster.yaml` or the KubeRay manifests install), or whatever `--runtime-env`
adds. The run's options are checked here before anything is submitted and travel as a config file
in the job's working directory. Credentials never travel: the cluster reads storage with its own
(instance role, pod identity, or its nodes' environment), and the Jobs API shows runtime
environments to anyone who can reach the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from enrich import errors
from enrich.config import build, read_mapping
from enrich.errors import UsageError
from enrich.runtime import is_jobs_api

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"
ENTRYPOINTS = {False: "enrich_job.py", True: "reenrich.py"}
CONFIG_NAME = "enrich-run.json"
METADATA_KEY = "enrich"  # marks the jobs `enrich jobs list` shows
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|PRIVATE_KEY", re.I)
DONE = ("SUCCEEDED", "FAILED", "STOPPED")
QUIET_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk", "ray._private.runtime_env")


def address_of(flag: str | None) -> str:
    """The Jobs API: --address, else Ray's own variables, else a head on this machine."""
    if flag and not is_jobs_api(flag):
        raise UsageError(f"--address must be the head's Jobs API, http://HOST:8265, got {flag!r}")
    for value in (flag, os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if is_jobs_api(value):
            return value.rstrip("/")
    return DEFAULT_ADDRESS


def client(address: str):
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:  # pragma: no cover - ray[default] is a dependency
        raise UsageError("the Jobs API client needs ray[default]: pip install 'ray[default]'") from None
    for name in QUIET_LOGGERS:  # upload and websocket chatter; enrich prints what matters
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        if "authentication" in type(exc).__name__.lower() or "Unauthorized" in str(exc):
            raise UsageError(
                f"the Ray cluster at {address} wants its token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                "(or put the token in ~/.ray/auth_token)"
            ) from None
        raise UsageError(f"cannot reach the Ray Jobs API at {address}: {_first_line(exc)}") from None


def submit(values: dict, address: str, scheduled: bool, job_id: str | None, runtime_env_file: str | None) -> str:
    """Check the run's options, then submit it; returns the job's id."""
    cfg = build(values)  # bad options fail here, not on the cluster
    entry = JOBS_DIR / ENTRYPOINTS[scheduled]
    if not entry.is_file():
        raise UsageError(f"{entry} not found: enrich submit runs from a checkout of enrich (pip install -e .)")
    env = runtime_env(runtime_env_file)
    api = client(address)
    options = {k: v for k, v in values.items() if k not in ("input", "output", "address") and v is not None}
    with _working_dir(entry, options) as workdir:
        env = {**env, "working_dir": workdir}
        env["py_modules"] = [*env.get("py_modules", []), str(Path(__file__).resolve().parent)]
        env["excludes"] = [*env.get("excludes", []), "__pycache__", "*.pyc"]
        entrypoint = " ".join(
            ["python", entry.name, shlex.quote(cfg.input), shlex.quote(cfg.output), "--config", CONFIG_NAME]
        )
        metadata = {METADATA_KEY: "reenrich" if scheduled else "run", "input": cfg.input, "output": cfg.output}
        try:
            return api.submit_job(entrypoint=entrypoint, runtime_env=env, metadata=metadata, submission_id=job_id)
        except Exception as exc:
            raise UsageError(f"the cluster at {address} refused the job: {_first_line(exc)}") from None


def runtime_env(path: str | None) -> dict:
    """The user's additions (pip, container, env_vars, ...), without credentials."""
    env = read_mapping(path) if path else {}
    secrets = sorted(k for k in (env.get("env_vars") or {}) if SECRET_NAME.search(str(k)))
    if secrets:
        raise UsageError(
            f"{path} puts {', '.join(secrets)} in the job's runtime environment, which the dashboard shows to "
            "anyone who can reach it; give the cluster its own credentials (instance role, pod identity)"
        )
    if "working_dir" in env:
        raise UsageError(f"{path}: working_dir is enrich's own (the job entry point and its config)")
    return env


@contextmanager
def _working_dir(entry: Path, options: dict):
    """A folder holding the entry point and the run's options (Ray uploads it with the job)."""
    with tempfile.TemporaryDirectory(prefix="enrich-job-") as tmp:
        shutil.copy(entry, tmp)
        with open(os.path.join(tmp, CONFIG_NAME), "w") as f:
            json.dump(options, f, indent=1, sort_keys=True)  # `enrich run --config` reads .json as JSON
        yield tmp


def wait(address: str, job_id: str, out=sys.stdout) -> int:
    """Stream the job's logs until it ends; its result as `enrich run`'s exit code."""
    api = client(address)

    async def follow() -> None:
        async for chunk in api.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        try:
            asyncio.run(follow())
        except Exception as exc:  # the log stream broke off: the job's state still tells its result
            print(f"enrich: lost the job's log stream ({_first_line(exc)}); waiting for its end", file=sys.stderr)
        info = _info(api, job_id)
        while str(info.status) not in DONE:  # logs can end a moment before the status does
            time.sleep(1)
            info = _info(api, job_id)
    except KeyboardInterrupt:
        print(f"enrich: stopped following; the job goes on (enrich jobs stop {job_id})", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    return exit_code(info)


def exit_code(info) -> int:
    """SUCCEEDED and FAILED carry the run's own code (0, 1 or 2); a job that never ran its
    entry point is 2 (could not run), a stopped one 130 (like Ctrl-C)."""
    status = str(info.status)
    if status == "SUCCEEDED":
        return errors.EXIT_OK
    if status == "STOPPED":
        print(f"enrich: job {info.submission_id} was stopped", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    code = info.driver_exit_code
    if code in (errors.EXIT_CLIPS_FAILED, errors.EXIT_CANNOT_RUN, errors.EXIT_INTERRUPTED):
        return code
    print(f"enrich: job {info.submission_id} failed: {_first_line(info.message or 'no reason given')}", file=sys.stderr)
    return errors.EXIT_CANNOT_RUN


def list_lines(address: str, everything: bool) -> list[str]:
    jobs = [j for j in client(address).list_jobs() if everything or (j.metadata or {}).get(METADATA_KEY)]
    jobs.sort(key=lambda j: j.start_time or 0)
    lines = [f"{'job':<30} {'status':<10} {'started (UTC)':<19} {'took':>7}  what"]
    for j in jobs:
        meta = j.metadata or {}
        what = (
            f"{meta[METADATA_KEY]} {meta.get('input')} -> {meta.get('output')}"
            if meta.get(METADATA_KEY)
            else j.entrypoint
        )
        lines.append(
            f"{j.submission_id or j.job_id:<30} {j.status!s:<10} {_when(j.start_time):<19} {_took(j):>7}  {what}"
        )
    return lines


def status_lines(address: str, job_id: str) -> list[str]:
    info = _info(client(address), job_id)
    lines = [f"{job_id}: {info.status} (started {_when(info.start_time)}, {_took(info)})"]
    if info.message:
        lines.append(_first_line(info.message))
    if info.driver_exit_code is not None:
        lines.append(f"exit code {info.driver_exit_code}")
    return lines


def logs(address: str, job_id: str) -> str:
    api = client(address)
    _info(api, job_id)
    return api.get_job_logs(job_id)


def stop(address: str, job_id: str) -> str:
    api = client(address)
    info = _info(api, job_id)
    if str(info.status) in DONE:
        return f"{job_id} already ended: {info.status}"
    api.stop_job(job_id)
    return f"{job_id}: stop requested"


def _info(api, job_id: str):
    try:
        return api.get_job_info(job_id)
    except Exception as exc:
        if "does not exist" in str(exc) or "not found" in str(exc).lower():
            raise UsageError(f"no job {job_id!r} on this cluster") from None
        raise UsageError(f"cannot get job {job_id!r}: {_first_line(exc)}") from None


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else "-"


def _took(info) -> str:
    if not info.start_time:
        return "-"
    seconds = ((info.end_time or time.time() * 1000) - info.start_time) / 1000
    return f"{seconds:.0f}s"


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
