"""Pool sizing from the cluster's shape, and the columns each stage drops."""

from __future__ import annotations

import sys

import pytest

from enrich.errors import UsageError
from enrich.resources import size_actors
from enrich.runtime import ClusterShape
from enrich.stages.depth import DepthConfig
from enrich.stages.flow import FlowConfig
from enrich.stages.pose import PoseConfig

BATCH = {"cpu": 1, "gpu": 4}


def shape(cpus=8, gpus=0.0, nodes=1):
    return ClusterShape(cpus=cpus, gpus=gpus, nodes=nodes, cpus_per_node=int(cpus // nodes))


def test_stages_share_each_gpu_and_get_one_actor_per_gpu():
    stages = {"depth": (DepthConfig(), BATCH), "flow": (FlowConfig(), BATCH), "pose": (PoseConfig(), BATCH)}
    sizes = size_actors(stages, shape(cpus=32, gpus=4, nodes=4))
    assert {n: (s.pool, round(s.gpus, 3), s.batch_size) for n, s in sizes.items()} == {n: (4, 0.333, 4) for n in stages}
    alone = size_actors({"depth": (DepthConfig(), BATCH)}, shape(cpus=32, gpus=4, nodes=4))["depth"]
    assert (alone.pool, alone.gpus, alone.threads) == (4, 1.0, None)


def test_explicit_gpu_fractions_leave_the_rest_to_the_others_and_overcommit_fails():
    stages = {"depth": (DepthConfig(gpus=0.5), BATCH), "flow": (FlowConfig(), BATCH), "pose": (PoseConfig(), BATCH)}
    sizes = size_actors(stages, shape(cpus=16, gpus=2))
    assert {n: (s.pool, s.gpus) for n, s in sizes.items()} == {"depth": (2, 0.5), "flow": (2, 0.25), "pose": (2, 0.25)}
    # a bottleneck stage gets more actors; the others fill what is left
    more_flow = {
        "depth": (DepthConfig(gpus=0.25), BATCH),
        "flow": (FlowConfig(gpus=0.25, pool_size=8), BATCH),
        "pose": (PoseConfig(gpus=0.25), BATCH),
    }  # the README's example
    sizes = size_actors(more_flow, shape(cpus=32, gpus=4, nodes=4))
    assert {n: (s.pool, s.gpus) for n, s in sizes.items()} == {"depth": (4, 0.25), "flow": (8, 0.25), "pose": (4, 0.25)}
    with pytest.raises(UsageError, match="want 4 GPUs .* has 2"):
        size_actors({"depth": (DepthConfig(gpus=1, pool_size=4), BATCH)}, shape(cpus=16, gpus=2))


def test_cpu_actors_leave_a_cpu_for_decoding_and_split_the_cores():
    stages = {"depth": (DepthConfig(), BATCH), "flow": (FlowConfig(), BATCH), "pose": (PoseConfig(), BATCH)}
    sizes = size_actors(stages, shape(cpus=2))
    assert all(s.cpus * 3 <= 1 + 1e-9 and (s.pool, s.calls, s.threads, s.gpus) == (1, 1, 1, 0) for s in sizes.values())
    one = size_actors({"depth": (DepthConfig(), BATCH)}, shape(cpus=2))["depth"]
    # alone, a stage gets one actor running a single-threaded call per core; it leaves a CPU for the tasks
    assert (one.pool, one.calls, one.threads, one.cpus) == (1, 2, 1, 1.0)
    threaded = size_actors({"depth": (DepthConfig(threads=2), BATCH)}, shape(cpus=2))["depth"]
    assert (threaded.pool, threaded.calls, threaded.threads) == (1, 1, 2)
    # an explicit pool size on CPU: that many single-call actors, as before replicas existed
    pooled = size_actors({"depth": (DepthConfig(pool_size=2), BATCH)}, shape(cpus=2))["depth"]
    assert (pooled.pool, pooled.calls, pooled.threads, pooled.cpus) == (2, 1, 1, 0.5)


def test_cpu_replicas_per_node_are_bounded_and_leave_each_node_a_cpu():
    # several nodes (which may differ in size): one single-call actor per replica, so each fits
    big = size_actors({"depth": (DepthConfig(), BATCH)}, shape(cpus=32, nodes=2))["depth"]
    assert (big.pool, big.calls, big.threads) == (16, 1, 2)  # 8 per node at most, splitting its 16 cores
    assert 8 * big.cpus <= 16 - 1  # a CPU per node stays free for the tasks
    small = size_actors({"depth": (DepthConfig(), BATCH)}, shape(cpus=16, nodes=4))["depth"]
    assert (small.pool, small.calls) == (16, 1) and 4 * small.cpus <= 4 - 1
    two = size_actors({"depth": (DepthConfig(), BATCH), "pose": (PoseConfig(), BATCH)}, shape(cpus=8))
    assert {n: (s.pool, s.calls, s.threads) for n, s in two.items()} == {"depth": (1, 4, 1), "pose": (1, 4, 1)}
    assert sum(s.cpus for s in two.values()) <= 8 - 1
    # a GPU stage's actors take a CPU each on their node; a CPU stage beside them keeps one free
    mixed = size_actors({"depth": (DepthConfig(), BATCH), "pose": (PoseConfig(gpus=0), BATCH)}, shape(16, 2, 2))
    assert (mixed["depth"].pool, mixed["depth"].gpus) == (2, 1.0)
    assert mixed["pose"].calls == 1 and mixed["pose"].pool / 2 * mixed["pose"].cpus <= 8 - 1 - 1
    with pytest.raises(UsageError, match="leave no CPU"):
        size_actors({"depth": (DepthConfig(gpus=1, pool_size=2), BATCH)}, shape(cpus=2, gpus=2))
    with pytest.raises(UsageError, match="leave no CPU"):
        size_actors({"depth": (DepthConfig(), BATCH)}, shape(cpus=1))


def test_tasks_yield_and_blocks_shrink_only_when_every_model_runs_on_cpu():
    from enrich.pipeline import cpu_only
    from enrich.stages.base import Operator
    from enrich.stages.decode import Decode
    from enrich.stages.depth import Depth
    from enrich.stages.pose import Pose

    tasks = Operator(Decode)
    assert cpu_only([tasks, Operator(Depth, actors=1, calls=2), Operator(Pose, actors=2)])
    assert not cpu_only([tasks, Operator(Depth, actors=1, num_gpus=0.5), Operator(Pose, actors=2)])


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_yield_to_models_lowers_only_the_calling_thread():
    import os
    import threading

    from enrich.runtime import yield_to_models

    main = os.getpriority(os.PRIO_PROCESS, 0)
    target = min(19, main + 3)
    seen = {}

    def task(key: str, nice: int) -> None:
        yield_to_models(nice)
        seen[key] = os.getpriority(os.PRIO_PROCESS, 0)

    for key, nice in (("raised", target), ("never lowered", main - 1 if main > -20 else main)):
        thread = threading.Thread(target=task, args=(key, nice))
        thread.start()
        thread.join()
    assert seen == {"raised": target, "never lowered": main}  # lowering would need privileges
    assert os.getpriority(os.PRIO_PROCESS, 0) == main  # Linux: a thread's nice value is its own


def test_each_stage_drops_what_no_later_stage_reads():
    from enrich.pipeline import with_drops
    from enrich.stages.base import Operator
    from enrich.stages.decode import Decode
    from enrich.stages.depth import Depth, EncodeDepth
    from enrich.stages.flow import EncodeFlow, Flow
    from enrich.stages.pose import Pose
    from enrich.stages.write import WriteParts

    order = [Decode, Depth, EncodeDepth, Flow, EncodeFlow, Pose, WriteParts]
    drops = {p.stage.name: p.kwargs["drop"] for p in with_drops([Operator(s) for s in order])[:-1]}
    assert drops == {
        "decode": (), "depth": (), "encode-depth": ("depth_codes",), "flow": ("next_frame",),
        "encode-flow": ("flow",), "pose": ("frame",),
    }  # fmt: skip
    only_depth = with_drops([Operator(s) for s in (Decode, Depth, EncodeDepth, WriteParts)])
    assert only_depth[1].kwargs["drop"] == ("frame",)
