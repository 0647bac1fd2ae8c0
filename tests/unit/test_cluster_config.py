"""cluster.yaml is checked the way `ray up` checks it: Ray's own defaults filled in, then Ray's
own validation against its cluster-config schema."""

import copy
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def check(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation():
    prepared = check(yaml.safe_load(CLUSTER.read_text()))
    assert prepared["provider"]["type"] == "aws" and prepared["head_node_type"] == "head"
    assert prepared["available_node_types"]["gpu_worker"]["max_workers"] >= 1


@pytest.mark.parametrize("break_it", [
    lambda c: c.update(max_worker=3),  # a typo
    lambda c: c["available_node_types"]["gpu_worker"].update(min_workers="zero"),
])  # fmt: skip
def test_the_validation_would_catch_a_broken_file(break_it):
    import jsonschema

    config = yaml.safe_load(CLUSTER.read_text())
    break_it(config)
    with pytest.raises(jsonschema.ValidationError):
        check(config)
