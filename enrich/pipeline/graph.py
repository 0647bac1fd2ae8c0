"""The stage graph: decode -> (actor pool, encoder) per model stage -> summary, audit, write, each
with its resources, as Ray Data operators (`build_dataset`)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from enrich.catalog import Clip
from enrich.config import STAGES, RunConfig
from enrich.errors import UsageError
from enrich.resources import size_actors, task_cpus
from enrich.runtime import (
    BLOCK_BYTES,
    CPU_MODEL_BLOCK_BYTES,
    SUPPORT_NICE,
    ClusterShape,
    set_block_bytes,
)
from enrich.stages import model_stage
from enrich.stages.audit import Audit
from enrich.stages.base import Operator
from enrich.stages.decode import Decode
from enrich.stages.spec import ModelStage
from enrich.stages.temporal import Summarize
from enrich.stages.write import WriteParts

if TYPE_CHECKING:
    from enrich.pipeline.preflight import Prepared


def stage_plans(
    prep: Prepared, shape: ClusterShape, staging: str, stages: tuple[str, ...] | None = None, frames: bool = True
) -> list[Operator]:
    """decode -> (actor pool, encoder) per model stage -> write, each with its resources and the
    columns it may drop (those no later stage reads). `stages`: those of the run by default;
    `frames=False`: a pass that redoes stages with tables of their own alone (`enrich.plan`), whose
    decode emits their windows only and which has no summary or audit."""
    cfg = prep.cfg
    stages = {name: model_stage(name) for name in stages or cfg.stages}
    sized = prep.sizing and prep.sized_for == shape and set(prep.sizing) == set(stages)
    sizing = prep.sizing if sized else size_stages(cfg, stages, shape)  # a pass of fewer stages gets more
    cpus = task_cpus(sizing, shape)
    pairs = any(s.reads_pairs for s in stages.values())
    windows = next((s.windows(cfg.section(n)) for n, s in stages.items() if s.windows), None)
    shots = cfg.temporal.cut_threshold if windows and windows[2] else None
    # A decoder that crashes its worker is retried twice, then its clip is reported failed
    # (Ray's default is to retry forever). This also keeps decoding out of the model actors.
    plans = [
        Operator(
            Decode,
            dict(
                fps=cfg.fps,
                max_frames=cfg.max_frames_per_clip,
                pairs=pairs,
                decoder=cfg.decoder,
                windows=windows[:2] if windows else None,
                shots=shots,
                frames=frames,
            ),
            num_cpus=cpus,
            batch_size=1,
            remote_args={"max_retries": 2},
        )
    ]
    for name, stage in stages.items():
        size = sizing[name]
        kwargs = {**stage.actor_kwargs(cfg.section(name), prep.models[name]), "threads": size.threads}
        kwargs["batch_size"] = size.batch_size  # a compiled model pads short batches up to it
        # Ray sets OMP_NUM_THREADS=1 in a 1-CPU actor; torch.set_num_threads alone then leaves some
        # kernels single-threaded (measured: 3.3 vs 2.4 s per 720p frame on 2 cores).
        env = {"OMP_NUM_THREADS": str(size.threads)} if size.threads else {}
        plans.append(
            Operator(
                stage.actor,
                kwargs,
                actors=size.pool,
                calls=size.calls,
                num_cpus=size.cpus,
                num_gpus=size.gpus,
                batch_size=size.batch_size,
                env=env,
                note=", ".join(
                    n for n in (_precision(cfg.section(name).precision, name, size.gpus), prep.notes.get(name)) if n
                ),
            )
        )
        if stage.encoder:
            plans.append(Operator(stage.encoder, num_cpus=cpus))
    if frames:
        plans.append(Operator(Summarize, num_cpus=cpus))
        plans.append(Operator(Audit, dict(cfg=cfg.audit), num_cpus=cpus))
    ids = prep.model_ids
    constants = {"run_id": prep.run_id, "config_hash": prep.hashes.get("frames", prep.config_hash)}
    constants.update({f"{name}_model": ids.get(name) for name in STAGES})
    # The encoders, summary, audit and write take the same resources and batch size, so Ray Data
    # fuses them into one task per block: encoded outputs never round-trip through the object store,
    # and each clip's rows are staged (and the clip committed) as the model finishes them. A separate
    # write operator with its own CPU reservation was starved until the model stages were done.
    # A block (not a fixed number of rows) per task bounds the task's memory by BLOCK_BYTES whatever
    # the resolution: 8 rows of 4K frames and maps held 2.5 GB in one task.
    plans.append(Operator(WriteParts, dict(staging=staging, constants=constants), num_cpus=cpus))
    # When every model runs on CPU, the tasks give way to the model replicas on the same cores
    # (`enrich.runtime.yield_to_models`); next to a GPU stage they keep their priority, as they may
    # be what keeps the GPU fed.
    nice = SUPPORT_NICE if cpu_only(plans) else 0
    return with_drops([p if p.actors else replace(p, nice=nice) for p in plans])


def _precision(precision: str, stage: str, gpus: float) -> str:
    """What `--STAGE-precision` means on the stage's device (see `enrich.ops.common.torch_dtype`)."""
    if precision != "auto":
        return precision + (" autocast" if stage == "flow" and precision == "bf16" else "")
    if stage == "flow":
        return "auto: fp32, TF32 on CUDA" if gpus else "auto: fp32"
    return "auto: bf16 on CUDA (fp32 if it lacks bf16)" if gpus else "auto: bf16 on CPUs with AMX, else fp32"


def cpu_only(plans: list[Operator]) -> bool:
    """Whether every model stage of the run runs on CPUs."""
    return all(not p.num_gpus for p in plans if p.actors)


def size_stages(cfg: RunConfig, stages: dict[str, ModelStage], shape: ClusterShape):
    return size_actors({n: (cfg.section(n), s.default_batch) for n, s in stages.items()}, shape)


def with_drops(plans: list[Operator]) -> list[Operator]:
    """Each stage drops the inputs that no later stage reads (and it does not itself rewrite), so
    frames and raw model outputs leave the object store as soon as possible."""
    out = []
    for i, p in enumerate(plans):
        keep = {c for q in plans[i + 1 :] for c in q.stage.inputs} | set(p.stage.outputs)
        out.append(replace(p, kwargs={**p.kwargs, "drop": tuple(c for c in p.stage.inputs if c not in keep)}))
    return out


def build_dataset(clips: list[Clip], plans: list[Operator]):
    import ray

    set_block_bytes(CPU_MODEL_BLOCK_BYTES if cpu_only(plans) else BLOCK_BYTES)
    items = [{"clip_id": c.clip_id, "clip_uri": c.clip_uri} for c in clips]
    # One clip per block: a worker that crashes takes only its own clip down.
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 100_000)))
    for p in plans:
        if p.actors:  # the class itself: Ray constructs it once per actor (loading the model there)
            fn = p.stage
            # Concurrent calls run the model in threads at once (torch releases the GIL in its kernels).
            threads = (
                dict(max_concurrent_calls_per_actor=p.calls, enable_true_multi_threading=True) if p.calls > 1 else {}
            )
            pool = ray.data.ActorPoolStrategy(size=p.actors, **threads)
            extra = dict(compute=pool, fn_constructor_kwargs=p.kwargs)
        else:  # a cheap instance, shipped to stateless tasks
            fn, extra = p.stage(**p.kwargs), {}
            fn.nice = p.nice
        with warnings.catch_warnings():  # max_retries has no named parameter yet (Ray 2.60)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(
                fn,
                batch_size=p.batch_size,
                batch_format="numpy",
                num_cpus=p.num_cpus,
                num_gpus=p.num_gpus or None,
                runtime_env={"env_vars": p.env} if p.env else None,
                **extra,
                **p.remote_args,
            )
    return ds


def local_shape() -> ClusterShape:
    """This machine as an embedded Ray would see it (its cores; NVIDIA GPUs from the driver's
    /proc entries), without starting Ray."""
    import os

    gpus = len(os.listdir("/proc/driver/nvidia/gpus")) if os.path.isdir("/proc/driver/nvidia/gpus") else 0
    cpus = os.cpu_count() or 1
    return ClusterShape(cpus=float(cpus), gpus=float(gpus), nodes=1, cpus_per_node=cpus)


def operator_lines(prep: Prepared) -> list[str]:
    """The stage graph `enrich run --plan` prints after the clip plan: each operator, its pool and
    resources and the columns it reads and writes. Against a cluster (`--address`) the pools are
    sized when the run starts, so the plan shows them for this machine and says so."""
    where = "this machine" if not prep.cfg.address else f"this machine (the run sizes them on {prep.cfg.address})"
    stages = prep.cfg.stages
    groups = [(g[0], g[1], len(g[2])) for g in prep.plan.groups(stages)] or [(stages, True, 0)]
    lines = []
    for names, whole, n in groups:
        alone = "" if whole else f" for the {n} clip{'' if n == 1 else 's'} redone for {'+'.join(names)} alone"
        try:
            plans = stage_plans(prep, local_shape(), "", names, whole)
        except UsageError as exc:  # e.g. --STAGE-gpus for a GPU cluster, planned from a laptop
            lines.append(f"operators{alone}: sized when the run starts ({exc})")
            continue
        lines += [f"operators{alone}, sized for {where}:"] + [f"  {p.describe()}" for p in plans]
    return lines
