"""`enrich submit` without a cluster: where it submits, what a job's end means as an exit code, and
what may go into a job's runtime environment. The real Jobs API is exercised in tests/e2e/test_jobs.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from enrich import errors, submit
from enrich.errors import UsageError


def test_address_flag_then_rays_variables_then_this_machine(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert submit.address_of(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a Ray client address is not the Jobs API
    assert submit.address_of(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    assert submit.address_of(None) == "http://head:8265"
    assert submit.address_of("https://other:443") == "https://other:443"
    with pytest.raises(UsageError, match="http://HOST:8265"):
        submit.address_of("head:6379")


@pytest.mark.parametrize(
    "status, driver_code, expected",
    [
        ("SUCCEEDED", 0, errors.EXIT_OK),
        ("FAILED", 1, errors.EXIT_CLIPS_FAILED),  # the run finished with failed clips
        ("FAILED", 2, errors.EXIT_CANNOT_RUN),
        ("FAILED", None, errors.EXIT_CANNOT_RUN),  # the entry point never ran (runtime env setup, say)
        ("FAILED", -9, errors.EXIT_CANNOT_RUN),  # killed
        ("STOPPED", None, errors.EXIT_INTERRUPTED),
    ],
)
def test_a_jobs_end_is_the_runs_exit_code(status, driver_code, expected, capsys):
    info = SimpleNamespace(status=status, driver_exit_code=driver_code, submission_id="raysubmit_x", message="boom")
    assert submit.exit_code(info) == expected
    err = capsys.readouterr().err
    assert err.count("\n") == (0 if driver_code in (0, 1, 2) else 1)


def test_credentials_never_go_into_a_runtime_env(tmp_path):
    good = tmp_path / "env.yaml"
    good.write_text("pip: [opencv-python-headless]\nenv_vars: {HF_HOME: /cache}\n")
    assert submit.runtime_env(str(good)) == {"pip": ["opencv-python-headless"], "env_vars": {"HF_HOME": "/cache"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("env_vars: {AWS_ACCESS_KEY_ID: AKIA, AWS_SESSION_TOKEN: t}\n")
    with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN") as caught:
        submit.runtime_env(str(bad))
    assert "AKIA" not in str(caught.value)
    own = tmp_path / "own.yaml"
    own.write_text("working_dir: .\n")
    with pytest.raises(UsageError, match="working_dir"):
        submit.runtime_env(str(own))


def test_bad_options_fail_before_any_cluster_is_contacted():
    values = {"input": "s3://b/in", "output": "s3://b/out", "fps": -1}
    with pytest.raises(UsageError, match="fps"):
        submit.submit(values, "http://127.0.0.1:9", scheduled=False, job_id=None, runtime_env_file=None)
