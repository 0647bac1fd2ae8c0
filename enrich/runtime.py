"""Connecting to Ray and sizing the stages from what the cluster has.

Default: an embedded local Ray started in-process. With `--address`, an existing cluster; the
workers get this package through the runtime environment and only the non-secret AWS settings
(endpoint, region, profile name). Credentials come from the cluster's own chain (instance roles,
its environment), so they never travel with the job.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

from enrich.errors import UsageError

FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "ENRICH_CACHE",
)


def is_jobs_api(address: str | None) -> bool:
    """An http(s):// address is a head's Jobs API (for `enrich submit`), not a Ray cluster to join."""
    return bool(address) and address.startswith(("http://", "https://"))


# The niceness the CPU tasks' threads take when model actors run on CPUs (see `yield_to_models`).
SUPPORT_NICE = 10

BLOCK_BYTES = 8 * 2**20  # Ray Data's target block size in a run: about 3 decoded 720p frames
# ... and when the model stages run on CPUs, where a frame takes seconds: a block is then the unit of
# work of one model call, and at the end of a run one replica may be left alone with the last block
# while the others idle. One or two frames per block bound that to a frame or two; at CPU rates the
# extra blocks cost nothing.
CPU_MODEL_BLOCK_BYTES = 2 * 2**20


# What a run's blocks may hold in the object store at once. Ray Data's backpressure keeps the
# pipeline within it, so decode waits for the models instead of running ahead; its default is half
# the object store (3.5 GB on a 24 GB machine), which one long 4K clip's frames fill, and the
# object store then spills. A GiB per node holds ~16 4K frames with their maps, ~150 at 720p: a few
# batches per model replica. A GPU's batches are larger, and it gets more.
STORE_BYTES_PER_NODE = 2**30
STORE_BYTES_PER_GPU = 4 * 2**30


@dataclass(frozen=True)
class ClusterShape:
    cpus: float
    gpus: float
    nodes: int
    cpus_per_node: int


def local_raylet_pid() -> int | None:
    """The pid of the raylet an embedded Ray started in this process; None when joined to a cluster
    (or when Ray's private node object changes shape: only messages depend on it)."""
    import ray

    try:
        processes = ray._private.worker._global_node.all_processes
        return int(processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None


def local_ray_logs() -> str | None:
    """The log folder of an embedded Ray started in this process (its raylet's own account of a
    death is there); None when joined to a cluster."""
    import ray

    if local_raylet_pid() is None:
        return None
    try:
        return str(ray._private.worker._global_node.get_logs_dir_path())
    except AttributeError:
        return None


def init_ray(address: str | None) -> None:
    """Start or join Ray once per process (tests share one session across runs)."""
    import ray

    if ray.is_initialized():
        return
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    try:
        in_job = os.environ.get("RAY_ADDRESS", "")  # a GCS address, set by Ray for a job's driver
        if not address and in_job and not is_jobs_api(in_job):
            ray.init(**quiet)  # inside a Ray job: its cluster, its runtime env
        elif address:
            import enrich

            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            runtime_env = {"py_modules": [os.path.dirname(enrich.__file__)], "env_vars": env}
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        else:
            # Ray nices its workers to 15 by default; here the workers do all the heavy lifting, and a
            # niced model actor loses its threads to every small process, stalling each parallel op.
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                _system_config={"worker_niceness": 0},
                **quiet,
            )
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise UsageError(f"cannot start or join {where}: {str(exc).strip().splitlines()[0]}") from None
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
    configure_data_context()


def configure_data_context() -> None:
    from ray.data import DataContext

    # enrich reports what goes wrong itself, one line per problem (a model that cannot load, a clip
    # that fails); Ray Data's own account, tracebacks included, stays in its session log file.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # enrich prints its own progress in clips and frames
    ctx.print_on_execution_start = False
    # A worker that crashes (a decoder segfault on a hostile file) loses its block, not the run: the
    # clips it held are reported as failed by the driver, which sees their rows never arrived.
    ctx.max_errored_blocks = -1
    # Blocks of a few frames, not Ray's 128 MiB (~46 decoded 720p frames): model batches are formed
    # from several blocks anyway, and small blocks keep every actor of a pool busy to the end of the
    # run and let encode, audit and write overlap the model.
    set_block_bytes(BLOCK_BYTES)
    # A run of a single short clip cannot keep a whole pool busy; that is fine, and not worth a warning.
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)


def set_store_budget(shape: ClusterShape) -> int:
    """Bound what the datasets created from now on keep in the object store (see STORE_BYTES_*)."""
    from ray.data import DataContext

    budget = int(shape.nodes * STORE_BYTES_PER_NODE + shape.gpus * STORE_BYTES_PER_GPU)
    options = DataContext.get_current().execution_options
    options.resource_limits = options.resource_limits.copy(object_store_memory=budget)
    return budget


def set_block_bytes(size: int) -> None:
    """Ray Data's target block size for the datasets created from now on in this process."""
    from ray.data import DataContext

    DataContext.get_current().target_max_block_size = size


def cluster_shape() -> ClusterShape:
    import ray

    resources = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    per_node = max((int(n["Resources"].get("CPU", 0)) for n in alive), default=int(resources.get("CPU", 1)))
    return ClusterShape(resources.get("CPU", 1.0), resources.get("GPU", 0.0), max(len(alive), 1), max(per_node, 1))


def yield_to_models(nice: int) -> None:
    """Lower the calling thread's priority to `nice`, so that a CPU task (decode, encode, audit,
    write, commit) gives way to model actors' threads running on the same cores.

    A task sharing a core at equal priority preempts the model's thread and costs it its cache
    too; at nice 10 it takes far less from the model (`benchmarks/cpu_sharing.py`) and still gets
    about a tenth of each busy core, several times what keeping up with the model needs, and all of
    any idle one. On Linux the nice value is per thread, so only the thread running the task is
    touched; raising it needs no privilege. Where it cannot be set, nothing changes. On a cluster
    started with `ray start`, Ray already runs every worker at nice 15, and this does nothing.
    A worker process that ran such a task keeps its nice value for later tasks of the session.
    """
    if not nice or not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
