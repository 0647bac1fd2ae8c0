"""CPU stages run in many short-lived Ray workers: their modules must not pull in torch (~3 s each)."""

import subprocess
import sys

import pytest

LIGHT = [
    "enrich.stages.decode",
    "enrich.stages.depth",
    "enrich.stages.flow",
    "enrich.stages.pose",
    "enrich.stages.caption",
    "enrich.config",
    "enrich.manifest.schema",
    "enrich.stages.write",
]


@pytest.mark.parametrize("module", LIGHT)
def test_stage_module_does_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", f"importing {module} imports torch"


# The driver's work on the smoke models of depth and pose, in a fresh interpreter; `{work}` is
# `stage.resolve(cfg)` or `stage.check(stage.resolve(cfg))`. Prints whether torch and transformers got imported.
DRIVER_WORK = (
    "import sys; from enrich.stages import model_stage\n"
    "from enrich.stages.depth import DepthConfig; from enrich.stages.pose import PoseConfig\n"
    "for name, cfg in [('depth', DepthConfig(model='random:depth-anything-v2-small')),\n"
    "                  ('pose', PoseConfig(model='random:vitpose-tiny', detector_model='random:rtdetr-tiny'))]:\n"
    "    stage = model_stage(name); {work}\n"
    "print('torch' in sys.modules, 'transformers' in sys.modules)"
)


def driver_imports(work: str) -> str:
    code = DRIVER_WORK.format(work=work)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_resolving_a_smoke_model_does_not_import_torch_and_names_what_ops_build():
    """The driver resolves specs before anything starts; the names must match the builders."""
    assert driver_imports("stage.resolve(cfg)").split()[0] == "False"

    from enrich.stages.depth import actor as depth_actor
    from enrich.stages.depth import da3
    from enrich.stages.depth import model as depth
    from enrich.stages.pose import actor as pose_actor
    from enrich.stages.pose import model as pose

    assert set(depth_actor.V2_RANDOM_MODELS) == set(depth.RANDOM_BUILDERS)
    assert set(depth_actor.DA3_RANDOM_MODELS) == set(da3.RANDOM_BUILDERS)
    assert set(pose_actor.RANDOM_MODELS) == set(pose.RANDOM_BUILDERS)

    from enrich.stages.caption import actor as caption_actor
    from enrich.stages.caption import model as caption

    assert set(caption_actor.RANDOM_MODELS) == set(caption.RANDOM_BUILDERS)


def test_checking_a_model_on_the_driver_does_not_import_torch():
    """The driver checks configs only; the weights are checked where they load, in the actors."""
    from enrich.stages import model_stage
    from enrich.stages.depth import DepthConfig
    from enrich.stages.pose import PoseConfig

    configs = {
        "depth": DepthConfig(model="random:depth-anything-v2-small"),
        "pose": PoseConfig(model="random:vitpose-tiny", detector_model="random:rtdetr-tiny"),
    }
    for name, cfg in configs.items():  # builds the smoke models once (with torch), as a first run would
        stage = model_stage(name)
        stage.check(stage.resolve(cfg))
    assert driver_imports("stage.check(stage.resolve(cfg))") == "False False"
