"""How big each model stage's actor pool is, and what each actor reserves, from the cluster's shape.

Defaults, for the common case of one GPU per node:
  * on GPUs, the k model stages of a run share each GPU equally (1/k of a GPU per actor) and each
    stage gets one actor per GPU, so every node holds one actor of every stage and no GPU idles
    while another stage is the bottleneck; tune with `--STAGE-gpus` and `--STAGE-pool-size`;
  * on CPUs, one actor per stage, the stages splitting a node's cores for their threads; the actors' Ray CPU
    reservations are scaled down so that at least one CPU stays free for decode, encode and write
    tasks (otherwise the pipeline would wait forever for a CPU).
Impossible requests (more GPU than the cluster has, actors that leave no CPU) fail before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

from enrich.config import StageConfig
from enrich.errors import UsageError
from enrich.runtime import ClusterShape


@dataclass(frozen=True)
class ActorSizing:
    pool: int
    gpus: float
    cpus: float
    threads: int | None  # torch threads per actor (CPU actors)
    batch_size: int


def size_actors(stages: dict[str, tuple[StageConfig, dict[str, int]]], shape: ClusterShape) -> dict[str, ActorSizing]:
    """`stages`: name -> (its config section, its default batch sizes {"cpu": n, "gpu": n})."""
    on_gpu = {n: (shape.gpus > 0 if c.gpus is None else c.gpus > 0) for n, (c, _) in stages.items()}
    gpu_stages = max(1, sum(on_gpu.values()))
    plans: dict[str, tuple[int, float]] = {}
    for name, (cfg, _) in stages.items():
        gpus = (cfg.gpus if cfg.gpus is not None else 1.0 / gpu_stages) if on_gpu[name] else 0.0
        pool = cfg.pool_size or (max(1, int(shape.gpus / gpu_stages / gpus + 1e-9)) if on_gpu[name] else 1)
        plans[name] = (pool, gpus)
    wanted_gpus = sum(pool * gpus for pool, gpus in plans.values())
    if wanted_gpus > shape.gpus + 1e-9:
        detail = ", ".join(f"{n} {p} x {g:g}" for n, (p, g) in plans.items() if g)
        raise UsageError(f"the actor pools want {wanted_gpus:g} GPUs ({detail}) but the cluster has {shape.gpus:g}")
    cpu_actors = sum(pool for name, (pool, _) in plans.items() if not on_gpu[name])
    # CPU stages run side by side, so they split a node's cores rather than each taking all of them.
    cpu_stages = sum(1 for name in stages if not on_gpu[name])
    threads = max(1, shape.cpus_per_node // max(1, cpu_stages))
    gpu_actors = sum(pool for name, (pool, _) in plans.items() if on_gpu[name])
    cpu_share = min(1.0, max(0.1, (shape.cpus - 1 - gpu_actors) / cpu_actors)) if cpu_actors else 1.0
    if shape.cpus - gpu_actors - cpu_actors * cpu_share < 1 - 1e-9:
        raise UsageError(
            f"the actor pools ({gpu_actors + cpu_actors} actors) leave no CPU for decoding on a cluster "
            f"with {shape.cpus:g} CPUs; use smaller --STAGE-pool-size values"
        )
    return {
        name: ActorSizing(
            pool=pool,
            gpus=gpus,
            cpus=1.0 if on_gpu[name] else cpu_share,
            threads=None if on_gpu[name] else (cfg.threads or threads),
            batch_size=cfg.batch_size or default["gpu" if on_gpu[name] else "cpu"],
        )
        for (name, (cfg, default)), (pool, gpus) in zip(stages.items(), plans.values())
    }
