"""The KubeRay manifests and the job entry points they name stay in step with the code: every
entrypoint is a file in jobs/ whose arguments enrich's own parser and config accept, the jobs
select the cluster the RayCluster defines, and the image's Ray is the one the manifests declare
and pyproject allows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from enrich.cli import RUN_ONLY, SUBMIT_ONLY, build_parser, run_values
from enrich.config import build

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "jobs" / "kuberay"


def manifest(name: str) -> dict:
    (doc,) = list(yaml.safe_load_all((KUBERAY / name).read_text()))
    assert doc["apiVersion"] == "ray.io/v1"
    return doc


def check_entrypoint(entrypoint: str) -> None:
    python, script, *args = shlex.split(entrypoint)
    assert python == "python" and script.startswith("/home/ray/enrich/jobs/")
    assert (ROOT / "jobs" / Path(script).name).is_file(), script
    parsed = build_parser().parse_args(["run", *args])
    build(run_values(parsed, RUN_ONLY))  # raises on an option the code does not take


def test_cluster_has_an_autoscaling_gpu_group_and_a_dashboard():
    cluster = manifest("raycluster.yaml")
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["enableInTreeAutoscaling"] is True
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) == 1 and 1 <= gpu["minReplicas"] < gpu["maxReplicas"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": 8265, "name": "dashboard"} in head["ports"]


@pytest.mark.parametrize("name, kind", [("rayjob.yaml", "RayJob"), ("raycronjob.yaml", "RayCronJob")])
def test_jobs_run_real_entry_points_on_the_cluster(name, kind):
    doc = manifest(name)
    assert doc["kind"] == kind
    spec = doc["spec"]["jobTemplate"] if kind == "RayCronJob" else doc["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": manifest("raycluster.yaml")["metadata"]["name"]}
    check_entrypoint(spec["entrypoint"])
    args = shlex.split(spec["entrypoint"])
    assert spec["metadata"] == {"enrich": Path(args[1]).stem.replace("enrich_job", "run"), "input": args[2],
                                "output": args[3]}  # fmt: skip
    if kind == "RayCronJob":
        assert "reenrich.py" in spec["entrypoint"] and len(doc["spec"]["schedule"].split()) == 5


def test_one_ray_version_everywhere():
    declared = manifest("raycluster.yaml")["spec"]["rayVersion"]
    image = re.search(r"^FROM rayproject/ray:([\d.]+)-", (KUBERAY / "Dockerfile").read_text(), re.M).group(1)
    assert image == declared
    low, high = re.search(r'"ray\[[^\]]*\]>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text()).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(declared) < as_tuple(high)


def test_readme_cron_line_submits_a_scheduled_run():
    readme = (ROOT / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if re.match(r"^[\d*/,-]+ [\d*/,-]+ .* enrich submit ", ln)]
    args = shlex.split(line.split("enrich ", 1)[1].split(" >>")[0])  # without the redirection
    parsed = build_parser().parse_args(args)
    assert parsed.command == "submit" and parsed.scheduled and parsed.wait
    build(run_values(parsed, SUBMIT_ONLY))
