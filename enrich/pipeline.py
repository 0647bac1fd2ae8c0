"""`enrich run`: check what can be checked on the driver, then one Ray Data streaming pipeline.

    clips (metadata only) -> decode (CPU tasks)
        -> for each model stage of the run (flow, depth, pose): its actor pool (GPU when present),
           then its CPU encoder if it has one
        -> write parts (CPU tasks) -> per-clip counts to the driver

The driver only ever sees clip metadata and per-clip counts; frames and outputs stay in the object
store and the workers. As soon as all rows of a clip are staged, a small Ray task commits the clip
(one atomic file in frames/), so a crash loses at most the clips in flight.

The driver never loads a model: it checks each model's config, and the actors check the weights as
they load them (`enrich.stages.base.loading`); one that cannot ends the run before any commit.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pyarrow as pa

from enrich import licences, storage, supervise
from enrich.catalog import Clip, list_clips
from enrich.config import STAGES, RunConfig
from enrich.errors import InfrastructureError, UsageError
from enrich.lock import Lock
from enrich.manifest import commit
from enrich.models import ModelRef
from enrich.ops import video
from enrich.plan import Plan, make_plan
from enrich.resources import size_actors, task_cpus
from enrich.runtime import (
    BLOCK_BYTES,
    CPU_MODEL_BLOCK_BYTES,
    SUPPORT_NICE,
    ClusterShape,
    cluster_shape,
    init_ray,
    local_ray_logs,
    local_raylet_pid,
    set_block_bytes,
    set_store_budget,
)
from enrich.stages import model_stage
from enrich.stages.audit import Audit
from enrich.stages.base import StagePlan
from enrich.stages.decode import Decode
from enrich.stages.spec import ModelStage
from enrich.stages.temporal import FinishClip, Summarize
from enrich.stages.write import WriteParts
from enrich.tracker import ClipProgress, ClipTracker

CHECKPOINT_S = 30.0  # how often the clips table is rewritten during a long run
PROGRESS_S = 5.0


@dataclass(frozen=True)
class Prepared:
    cfg: RunConfig
    models: dict[str, dict[str, ModelRef]]  # stage -> role -> pinned model
    config_hash: str
    plan: Plan
    run_id: str
    previous: pa.Table | None  # the clips table before this run
    lock: Lock | None = None  # held from before the clips table is read until the run ends
    notes: dict[str, str] = field(default_factory=dict)  # stage -> its attention kernel, for --verbose

    def release(self) -> None:
        if self.lock:
            self.lock.release()

    @property
    def model_specs(self) -> dict[str, str]:
        """role -> the spec the user gave, e.g. {"depth": ..., "pose": ..., "pose detector": ...}."""
        return {
            name if role == "model" else f"{name} {role}": ref.spec
            for name, refs in self.models.items()
            for role, ref in refs.items()
        }

    @property
    def model_ids(self) -> dict[str, str]:
        """What each stage's rows record as their model (see `ModelStage.identity`)."""
        return {name: ModelStage.identity(refs) for name, refs in self.models.items()}


@dataclass
class RunSummary:
    run_id: str
    output: str
    clips_ok: int = 0
    clips_failed: int = 0
    clips_skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"run {self.run_id}: {self.clips_ok} clips ok, {self.clips_failed} failed, "
            f"{self.clips_skipped} up to date; "
            f"{self.frames} frames written in {self.seconds:.1f}s ({rate:.2f} frames/s)",
            f"manifest: {storage.join(self.output, 'frames')} and {storage.join(self.output, 'clips')}",
        ]
        out += self.notes
        out += [f"  failed {clip}: {why}" for clip, why in sorted(self.failures.items())[:20]]
        if len(self.failures) > 20:
            out.append(f"  ... and {len(self.failures) - 20} more (query the clips table for status = 'failed')")
        return out


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def prepare(cfg: RunConfig, plan_only: bool = False, log=None) -> Prepared:
    """Every check that can fail before any work: input, output, models (resolved, staged on this
    node and their configs checked; their weights are checked by the actors), plan.

    When there is work, Ray starts while the models are being checked. `plan_only` stops after the
    plan: models are resolved (their ids are in the plan's config hash) but not checked. A run that
    fails here, and a plan, leave OUTPUT as they found it: folders they made are removed again.
    """
    cfg = _normalized(cfg)
    found = storage.first_existing(cfg.output)
    lock = None
    try:
        storage.check_readable(cfg.input)
        storage.check_writable(cfg.output)
        stages = {name: model_stage(name) for name in cfg.stages}
        models = {name: stage.resolve(cfg.section(name)) for name, stage in stages.items()}
        clips = list_clips(cfg.input)
        if not clips:
            raise UsageError(f"no video files under {cfg.input}")
        ids = {name: ModelStage.identity(refs) for name, refs in models.items()}
        config_hash = cfg.output_hash(ids)
        with storage.s3_errors(cfg.output):
            lock = None if plan_only else Lock(cfg.output).acquire()
            if lock:
                supervise.report(output=cfg.output, lock_token=lock.token)
            previous = commit.read_clips(cfg.output)
        plan = make_plan(clips, previous, config_hash, cfg.force, cfg.retry_limit)
        prep = Prepared(cfg, models, config_hash, plan, new_run_id(), previous, lock)
        if plan_only:
            storage.remove_empty_folders(cfg.output, found)
            return prep
        with ThreadPoolExecutor(max_workers=2) as pool:
            checked = pool.submit(_check_models, cfg, stages, models)
            decoder = pool.submit(video.check_decoder, cfg.decoder)
            if plan.todo:
                if log:
                    log(f"starting Ray ({cfg.address or 'embedded, on this machine'}); checking {len(stages)} models")
                init_ray(cfg.address)
                _sizing(cfg, stages, cluster_shape())  # pools that cannot fit fail here, before any work
            checked.result()
            decoder.result()
        return prep
    except BaseException:
        if lock:
            lock.release()
        storage.remove_empty_folders(cfg.output, found)
        raise


def _check_models(cfg: RunConfig, stages: dict[str, ModelStage], models: dict[str, dict[str, ModelRef]]) -> None:
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # the driver's output is one line per problem, not download bars
    for name, stage in stages.items():
        try:
            stage.check(models[name])
        except Exception as exc:
            spec = cfg.section(name).model
            raise UsageError(f"{name} model {spec} cannot be loaded: {str(exc).strip().splitlines()[0]}") from None


def _attention_notes(prep: Prepared) -> dict[str, str]:
    notes = {}
    for name in prep.cfg.stages:
        stage = model_stage(name)
        if stage.attention:
            try:
                notes[name] = stage.attention(prep.models[name])
            except Exception as exc:  # a diagnostic: never the reason a run fails
                notes[name] = f"attention unknown ({type(exc).__name__})"
    return notes


def _precision(precision: str, stage: str, gpus: float) -> str:
    """What `--STAGE-precision` means on the stage's device (see `enrich.ops.common.torch_dtype`)."""
    if precision != "auto":
        return precision + (" autocast" if stage == "flow" and precision == "bf16" else "")
    if stage == "flow":
        return "auto: fp32, TF32 on CUDA" if gpus else "auto: fp32"
    return "auto: bf16 on CUDA (fp32 if it lacks bf16)" if gpus else "auto: bf16 on CPUs with AMX, else fp32"


def _normalized(cfg: RunConfig) -> RunConfig:
    return replace(cfg, input=storage.normalize(cfg.input), output=storage.normalize(cfg.output))


def stage_plans(prep: Prepared, shape: ClusterShape, staging: str) -> list[StagePlan]:
    """decode -> (actor pool, encoder) per model stage -> write, each with its resources and the
    columns it may drop (those no later stage reads)."""
    cfg = prep.cfg
    stages = {name: model_stage(name) for name in cfg.stages}
    sizing = _sizing(cfg, stages, shape)
    cpus = task_cpus(sizing, shape)
    pairs = any(s.reads_pairs for s in stages.values())
    windows = next((s.windows(cfg.section(n)) for n, s in stages.items() if s.windows), None)
    # A decoder that crashes its worker is retried twice, then its clip is reported failed
    # (Ray's default is to retry forever). This also keeps decoding out of the model actors.
    plans = [
        StagePlan(
            Decode,
            dict(fps=cfg.fps, max_frames=cfg.max_frames_per_clip, pairs=pairs, decoder=cfg.decoder, windows=windows),
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
            StagePlan(
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
            plans.append(StagePlan(stage.encoder, num_cpus=cpus))
    plans.append(StagePlan(Summarize, num_cpus=cpus))
    plans.append(StagePlan(Audit, dict(cfg=cfg.audit), num_cpus=cpus))
    ids = prep.model_ids
    constants = {"run_id": prep.run_id, "config_hash": prep.config_hash}
    constants.update({f"{name}_model": ids.get(name) for name in STAGES})
    # The encoders, summary, audit and write take the same resources and batch size, so Ray Data
    # fuses them into one task per block: encoded outputs never round-trip through the object store,
    # and each clip's rows are staged (and the clip committed) as the model finishes them. A separate
    # write operator with its own CPU reservation was starved until the model stages were done.
    # A block (not a fixed number of rows) per task bounds the task's memory by BLOCK_BYTES whatever
    # the resolution: 8 rows of 4K frames and maps held 2.5 GB in one task.
    plans.append(StagePlan(WriteParts, dict(staging=staging, constants=constants), num_cpus=cpus))
    # When every model runs on CPU, the tasks give way to the model replicas on the same cores
    # (`enrich.runtime.yield_to_models`); next to a GPU stage they keep their priority, as they may
    # be what keeps the GPU fed.
    nice = SUPPORT_NICE if cpu_only(plans) else 0
    return with_drops([p if p.actors else replace(p, nice=nice) for p in plans])


def cpu_only(plans: list[StagePlan]) -> bool:
    """Whether every model stage of the run runs on CPUs."""
    return all(not p.num_gpus for p in plans if p.actors)


def _sizing(cfg: RunConfig, stages: dict[str, ModelStage], shape: ClusterShape):
    return size_actors({n: (cfg.section(n), s.default_batch) for n, s in stages.items()}, shape)


def with_drops(plans: list[StagePlan]) -> list[StagePlan]:
    """Each stage drops the inputs that no later stage reads (and it does not itself rewrite), so
    frames and raw model outputs leave the object store as soon as possible."""
    out = []
    for i, p in enumerate(plans):
        keep = {c for q in plans[i + 1 :] for c in q.stage.inputs} | set(p.stage.outputs)
        out.append(replace(p, kwargs={**p.kwargs, "drop": tuple(c for c in p.stage.inputs if c not in keep)}))
    return out


def build_dataset(clips: list[Clip], plans: list[StagePlan]):
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


def clip_row(
    clip: Clip, progress: ClipProgress | None, prep: Prepared, n_frames: int, error: str | None, figures: dict
) -> dict:
    video = progress.video if progress and not error else {}
    return {
        **figures,
        "clip_id": clip.clip_id,
        "clip_uri": clip.clip_uri,
        "size_bytes": clip.size_bytes,
        "etag": clip.etag,
        "status": "failed" if error else "ok",
        "error": error,
        "attempts": prep.plan.attempts.get(clip.clip_id, 1),
        "n_frames": n_frames,
        **{f"{name}_model": prep.model_ids.get(name) for name in STAGES},
        "run_id": prep.run_id,
        "config_hash": prep.config_hash,
        **{k: video.get(k) for k in ("source_frames", "fps", "duration_s", "width", "height")},
    }


def execute(prep: Prepared, log=print, verbose: bool = False) -> RunSummary:
    """Run the planned clips through Ray; commit each clip as it finishes.

    Storage that stays unreachable, or Ray failing under the driver, raises `InfrastructureError`:
    the clips committed so far are kept (and recorded, if storage lets us), those in flight are not
    published, and the same command resumes."""
    import ray

    cfg = prep.cfg
    summary = RunSummary(prep.run_id, cfg.output, clips_skipped=prep.plan.skipped)
    summary.notes = licences.non_commercial_notes(prep.model_specs) + smoke_notes(prep.model_specs)
    if prep.plan.gave_up:
        summary.notes.append(
            f"{len(prep.plan.gave_up)} clips failed {cfg.retry_limit} times with this content and config and "
            "were left alone (their reasons are in the clips table; --force retries them)"
        )
    started = time.monotonic()
    log(f"plan: {prep.plan.describe()}")
    _save_run_file(prep, "config.json", _config_record(prep))
    if not prep.plan.todo:
        summary.seconds = time.monotonic() - started
        return summary

    init_ray(cfg.address)
    staging_root = storage.join(cfg.output, "_staging")
    storage.delete_prefix(staging_root)  # we hold the lock: anything staged there is a dead run's
    staging = storage.join(staging_root, prep.run_id)
    supervise.report(
        staging=staging, staging_root=staging_root, raylet_pid=local_raylet_pid(), ray_logs=local_ray_logs()
    )
    shape = cluster_shape()
    set_store_budget(shape)
    if verbose:  # builds each model on the meta device: imports torch and transformers, so only here
        prep.notes.update(_attention_notes(prep))
    plans = stage_plans(prep, shape, staging)
    nice = max(p.nice for p in plans)  # commits are CPU tasks too
    for p in plans:
        if verbose:
            log(f"stage {p.describe()}")
    log(f"loading {len(cfg.stages)} model{'s' if len(cfg.stages) > 1 else ''} ({', '.join(cfg.stages)}) "
        f"for {len(prep.plan.todo)} clips")  # fmt: skip
    by_id = {c.clip_id: c for c in prep.plan.todo}
    previous = prep.previous
    committer = ray.remote(num_cpus=0.25, max_retries=3)(commit.commit_clip)
    finish_clip = FinishClip(cfg.temporal, cfg.audit)
    tracker, pending, finished_rows = ClipTracker(), {}, []

    def settle(block: bool) -> None:
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=None if block else 0)
        for ref in ready:
            clip_id, error = pending.pop(ref)
            with infrastructure_failures():
                n, figures = ray.get(ref)
            if "warning" in figures:
                summary.notes.append(figures.pop("warning")[:300])
            _record(summary, clip_id, error, n)
            finished_rows.append(clip_row(by_id[clip_id], tracker.clips.get(clip_id), prep, n, error, figures))

    def finish(clip_id: str, error: str | None) -> None:
        ref = committer.remote(cfg.output, staging, clip_id, error is None, finish_clip, nice)
        pending[ref] = (clip_id, error)

    def checkpoint() -> None:
        if finished_rows:
            with infrastructure_failures():
                commit.write_clips(cfg.output, commit.merge_clips(previous, finished_rows))
            supervise.report(committed=len(finished_rows))  # recorded in the clips table: kept if we die

    last_checkpoint = time.monotonic()
    ticker = _Ticker(PROGRESS_S, lambda: _progress(log, tracker, summary, len(by_id), time.monotonic() - started))
    ds = build_dataset(prep.plan.todo, plans)
    outage: InfrastructureError | None = None
    try:
        for batch in _guarded(_model_load_errors(ds.iter_batches(batch_size=None, batch_format="pyarrow"))):
            for row in batch.to_pylist():
                if str(row["error"]).startswith(storage.UNREACHABLE):
                    raise InfrastructureError(row["error"].split(" for ")[0])
                done = tracker.add(row)
                if done is not None:
                    finish(done.clip_id, None if done.ok else done.error or "some frames failed")
            settle(block=False)
            if time.monotonic() - last_checkpoint >= CHECKPOINT_S:
                last_checkpoint = time.monotonic()
                checkpoint()
        for clip_id in tracker.unfinished(list(by_id)):
            finish(clip_id, "no result: a worker crashed or its rows were lost while processing this clip")
        settle(block=True)
    except InfrastructureError as exc:
        outage = exc
        supervise.report(outage=str(exc))  # the cause, should the driver die while it cleans up
        for ref in pending:  # clips in flight are not published
            ray.cancel(ref, force=True)
        pending.clear()
    finally:
        ticker.stop()
        try:  # however the run ends; during an outage the first call that fails skips the rest
            with infrastructure_failures():
                settle(block=True)  # on Ctrl-C: the commits already under way finish
                checkpoint()
                storage.delete_prefix(staging)
                storage.remove_empty_folders(staging_root)
                summary.seconds = time.monotonic() - started
                _save_run_file(prep, "summary.json", _summary_record(summary))
        except InfrastructureError as exc:
            outage = outage or exc
            supervise.report(outage=str(outage))
    if outage:
        raise InfrastructureError(
            f"{outage}; {_clips(summary.clips_ok + summary.clips_failed)} committed by this run are kept and "
            "the clips in flight were not published; run the same command again to resume"
        ) from None
    return summary


@contextmanager
def infrastructure_failures():
    """Storage that stays unreachable (after botocore's retries), or Ray failing under the driver,
    raised as one `InfrastructureError` line; any other error passes through."""
    import ray.exceptions as rx

    try:
        yield
    except (rx.RaySystemError, rx.ObjectLostError, rx.OwnerDiedError, rx.NodeDiedError) as exc:
        raise InfrastructureError(f"the Ray cluster failed under the run: {_first_line(exc)}") from None
    except Exception as exc:
        reason = storage.unreachable(exc)
        if reason:
            raise InfrastructureError(f"storage unreachable: {reason}") from None
        raise


def _guarded(items):
    with infrastructure_failures():
        yield from items


def _clips(n: int) -> str:
    return f"{n} clip{'' if n == 1 else 's'}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


class _Ticker:
    """Calls `fn` every `seconds` in a thread until stopped: progress on a clock, not per batch."""

    def __init__(self, seconds: float, fn):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds, fn), name="enrich-progress", daemon=True)
        self._thread.start()

    def _run(self, seconds: float, fn) -> None:
        while not self._stop.wait(seconds):
            fn()

    def stop(self) -> None:
        self._stop.set()


def smoke_notes(specs: dict[str, str]) -> list[str]:
    smoke = [f"{role} {spec}" for role, spec in specs.items() if spec.startswith("random:")]
    if not smoke:
        return []
    return [f"note: SMOKE MODELS (random weights; what they wrote is meaningless): {', '.join(smoke)}"]


def _model_load_errors(batches):
    """`batches`, with a model actor that could not start (`enrich.errors.ModelLoadError`) turned into
    the one-line UsageError the CLI prints with exit code 2. Ray reports such an actor's death with
    the traceback of its constructor, whose last `ModelLoadError:` line is the reason."""
    try:
        yield from batches
    except Exception as exc:
        if not getattr(exc, "actor_init_failed", False) and "ModelLoadError" not in str(exc):
            raise
        found = re.findall(r"ModelLoadError: (.+)", str(exc))
        if found:
            raise UsageError(found[-1].strip()) from None
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise UsageError(f"a model actor could not start: {lines[-1][:300]}") from None


def _record(summary: RunSummary, clip_id: str, error: str | None, n_frames: int) -> None:
    if error:
        summary.clips_failed += 1
        summary.failures[clip_id] = error
    else:
        summary.clips_ok += 1
        summary.frames += n_frames


def _progress(log, tracker: ClipTracker, summary: RunSummary, total: int, elapsed: float) -> None:
    done = summary.clips_ok + summary.clips_failed
    rate = tracker.frames_ok / elapsed if elapsed > 0 else 0.0
    log(
        f"progress: {done}/{total} clips done ({summary.clips_failed} failed), "
        f"{tracker.frames_ok} frames, {rate:.2f} frames/s, {elapsed:.0f}s"
    )


def _config_record(prep: Prepared) -> dict:
    return {
        "run_id": prep.run_id,
        "config_hash": prep.config_hash,
        "models": prep.model_ids,
        "licences": licences.run_licences(prep.model_specs),
        "plan": prep.plan.describe(),
        "config": prep.cfg.to_flat(),
    }


def _summary_record(summary: RunSummary) -> dict:
    return {
        "run_id": summary.run_id,
        "clips_ok": summary.clips_ok,
        "clips_failed": summary.clips_failed,
        "clips_skipped": summary.clips_skipped,
        "frames": summary.frames,
        "seconds": round(summary.seconds, 3),
        "failures": summary.failures,
        "notes": summary.notes,
    }


def _save_run_file(prep: Prepared, name: str, record: dict) -> None:
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    storage.write_bytes(storage.join(prep.cfg.output, "runs", prep.run_id, name), data)


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
