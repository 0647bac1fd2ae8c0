"""CPU stages run in many short-lived Ray workers: their modules must not pull in torch (~3 s each)."""

import subprocess
import sys

import pytest

LIGHT = [
    "enrich.stages.decode",
    "enrich.stages.depth",
    "enrich.stages.flow",
    "enrich.stages.pose",
    "enrich.stages.write",
]


@pytest.mark.parametrize("module", LIGHT)
def test_stage_module_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", f"importing {module} imports torch"
