"""How big each model stage's actor pool is, and what each actor reserves, from the cluster's shape.

Defaults, for the common case of one GPU per node:
  * on GPUs, the model stages of a run share each GPU: a stage without `--STAGE-gpus` gets an
    equal part of what the explicit fractions leave (1/k each when none is given); stages with an
    explicit `--STAGE-pool-size` take their GPUs first, and every other stage gets one actor per
    "set" of fractions that fits in the rest (one per GPU when they add up to 1). Ray's GPU
    fractions are bookkeeping for placement, not compute shares: to give a bottleneck stage more
    throughput, raise its `--STAGE-pool-size`;
  * on CPUs, each stage gets an equal share of each node's cores as single-threaded model
    replicas (up to `MAX_CPU_REPLICAS_PER_NODE` per stage per node; beyond that each replica gets
    more torch threads). Data parallelism beats a model's intra-op threads on few cores
    (`benchmarks/cpu_sharing.py`), and a task taking a core slice stalls one replica instead of
    every thread at the next barrier. On a single node (the embedded default) a stage's replicas
    are the concurrent calls of one actor, in threads: torch releases the GIL in its kernels, and
    the node imports torch and loads the model once (flow and pose keep a copy per call, see
    `enrich.stages.base.PerThread`). On several nodes, which may differ in size, each replica is its
    own single-call actor, so that every one of them fits somewhere. `--STAGE-threads` sets the
    threads per replica (and so fewer replicas); an explicit `--STAGE-pool-size` gives that many
    single-call actors. The CPU reservations are scaled down so that at least one CPU per node
    stays free for the decode, encode and write tasks (otherwise the pipeline would wait forever).
Impossible requests (more GPU than the cluster has, actors that leave no CPU) fail before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from enrich.errors import UsageError
from enrich.runtime import ClusterShape
from enrich.stages.spec import StageConfig

MAX_CPU_REPLICAS_PER_NODE = 8  # concurrent calls per stage per node


@dataclass(frozen=True)
class ActorSizing:
    pool: int  # actors
    calls: int  # concurrent calls per actor, each a replica of `threads` torch threads (1 on GPU)
    gpus: float
    cpus: float  # per actor
    threads: int | None  # torch threads per call (CPU actors)
    batch_size: int


def size_actors(stages: dict[str, tuple[StageConfig, dict[str, int]]], shape: ClusterShape) -> dict[str, ActorSizing]:
    """`stages`: name -> (its config section, its default batch sizes {"cpu": n, "gpu": n})."""
    on_gpu = {n: (shape.gpus > 0 if c.gpus is None else c.gpus > 0) for n, (c, _) in stages.items()}
    gpus = _gpu_fractions(stages, on_gpu)
    # Stages with an explicit pool take their GPUs first; the others get one actor per set of
    # their fractions that fits in what is left.
    fixed = sum(c.pool_size * gpus[n] for n, (c, _) in stages.items() if n in gpus and c.pool_size)
    free = sum(gpus[n] for n, (c, _) in stages.items() if n in gpus and not c.pool_size)
    sets = max(1, int((shape.gpus - fixed) / free + 1e-9)) if free else 0
    cpu_stages = [n for n in stages if not on_gpu[n]]
    cores = shape.cpus_per_node // max(1, len(cpu_stages))  # each CPU stage's share of a node
    pools, calls = {}, {}
    for n, (c, _) in stages.items():
        if on_gpu[n] or c.pool_size:
            pools[n], calls[n] = c.pool_size or sets, 1
        elif shape.nodes == 1:
            pools[n], calls[n] = 1, _cpu_replicas_per_node(cores, c.threads)
        else:
            pools[n], calls[n] = _cpu_replicas_per_node(cores, c.threads) * shape.nodes, 1
    wanted = sum(pools[n] * g for n, g in gpus.items())
    if wanted > shape.gpus + 1e-9:
        detail = ", ".join(f"{n} {pools[n]} x {g:.2g}" for n, g in gpus.items())
        raise UsageError(f"the actor pools want {wanted:.3g} GPUs ({detail}) but the cluster has {shape.gpus:g}")

    # Per node (Ray places actors node by node): GPU actors take a CPU each, CPU replicas split the
    # cores, and one CPU stays free for the tasks.
    gpu_actors = math.ceil(sum(pools[n] for n in gpus) / shape.nodes)
    replicas = math.ceil(sum(pools[n] * calls[n] for n in cpu_stages) / shape.nodes)
    threads = max(1, shape.cpus_per_node // max(1, replicas))
    free = shape.cpus_per_node - 1 - gpu_actors
    share = min(threads, max(0.1, free / replicas)) if replicas else 1.0
    if free < replicas * share - 1e-9 or free < 0:
        raise UsageError(
            f"the model stages leave no CPU for decoding: {gpu_actors} GPU actors and {replicas} CPU replicas "
            f"per node of {shape.cpus_per_node} CPUs; use a smaller --STAGE-pool-size, more --STAGE-threads "
            "or a larger machine"
        )
    return {
        name: ActorSizing(
            pool=pools[name],
            calls=calls[name],
            gpus=gpus.get(name, 0.0),
            cpus=1.0 if on_gpu[name] else share * calls[name],
            threads=None if on_gpu[name] else (cfg.threads or threads),
            batch_size=cfg.batch_size or default["gpu" if on_gpu[name] else "cpu"],
        )
        for name, (cfg, default) in stages.items()
    }


def task_cpus(sizing: dict[str, ActorSizing], shape: ClusterShape) -> float:
    """What each CPU task (decode, and the fused encode, summary, audit and write) reserves: 1, or
    less where the actors leave fewer than 2 CPUs a node, so that a decode task and a post-model
    task always fit side by side. A decode task holding the only free CPU for a whole clip would
    otherwise keep the tasks after the models from starting, and Ray Data, to stay live, then lets
    the decode run ahead of the models: a long 4K clip's frames all went to the object store."""
    actors = sum(s.pool * s.cpus for s in sizing.values()) / shape.nodes
    return min(1.0, max(0.1, (shape.cpus_per_node - actors) / 2))


def _cpu_replicas_per_node(cores: int, threads: int | None) -> int:
    """A CPU stage's replicas on one node: one per `threads` of its cores (1 by default), within bounds."""
    return max(1, min(MAX_CPU_REPLICAS_PER_NODE, cores // (threads or 1)))


def _gpu_fractions(stages: dict[str, tuple[StageConfig, dict[str, int]]], on_gpu: dict[str, bool]) -> dict[str, float]:
    """GPU per actor of each GPU stage: explicit ones as given, the rest share what is left."""
    explicit = {n: float(c.gpus) for n, (c, _) in stages.items() if on_gpu[n] and c.gpus is not None}
    unset = [n for n in stages if on_gpu[n] and n not in explicit]
    left = 1.0 - sum(explicit.values())
    share = left / len(unset) if unset and left > 1e-9 else 1.0 / max(1, len(explicit) + len(unset))
    return {**explicit, **{n: share for n in unset}}
