"""`enrich run`: check everything on the driver, then one Ray Data streaming pipeline.

    clips (metadata only) -> decode (CPU tasks) -> depth (actor pool, GPU when present)
        -> encode (CPU tasks) -> write parts (CPU tasks) -> per-clip counts to the driver

The driver only ever sees clip metadata and per-clip counts; frames and depth stay in the object
store and the workers. As soon as all rows of a clip are staged, a small Ray task commits the clip
(one atomic file in frames/), so a crash loses at most the clips in flight.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from enrich import storage
from enrich.catalog import Clip, list_clips
from enrich.config import RunConfig
from enrich.errors import UsageError
from enrich.manifest import commit
from enrich.models import ModelRef, materialize, resolve
from enrich.ops.depth import RANDOM_BUILDERS, check_loadable
from enrich.plan import Plan, make_plan
from enrich.runtime import ClusterShape, cluster_shape, init_ray
from enrich.stages.base import StagePlan
from enrich.stages.decode import Decode
from enrich.stages.depth import DEFAULT_BATCH_SIZE, Depth
from enrich.stages.encode import Encode
from enrich.stages.write import WriteParts
from enrich.tracker import ClipProgress, ClipTracker

CHECKPOINT_S = 30.0  # how often the clips table is rewritten during a long run
PROGRESS_S = 2.0


@dataclass(frozen=True)
class Prepared:
    cfg: RunConfig
    model: ModelRef
    config_hash: str
    plan: Plan
    run_id: str
    previous: pa.Table | None  # the clips table before this run


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

    def lines(self) -> list[str]:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"run {self.run_id}: {self.clips_ok} clips ok, {self.clips_failed} failed, {self.clips_skipped} up to date; "
            f"{self.frames} frames written in {self.seconds:.1f}s ({rate:.2f} frames/s)",
            f"manifest: {storage.join(self.output, 'frames')} and {storage.join(self.output, 'clips')}",
        ]
        out += [f"  failed {clip}: {why}" for clip, why in sorted(self.failures.items())[:20]]
        if len(self.failures) > 20:
            out.append(f"  ... and {len(self.failures) - 20} more (query the clips table for status = 'failed')")
        return out


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def prepare(cfg: RunConfig) -> Prepared:
    """Every check that can fail, before any work: input, output, model, plan.

    When there is work, Ray starts while the model is being checked: the two take seconds each
    and barely compete (Ray's start is mostly waiting on its own processes).
    """
    cfg = _normalized(cfg)
    storage.check_readable(cfg.input)
    storage.check_writable(cfg.output)
    model = resolve(cfg.depth.model, RANDOM_BUILDERS)
    clips = list_clips(cfg.input)
    if not clips:
        raise UsageError(f"no video files under {cfg.input}")
    config_hash = cfg.output_hash(model.identity)
    with storage.s3_errors(cfg.output):
        previous = commit.read_clips(cfg.output)
    plan = make_plan(clips, previous, config_hash, cfg.force)
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(_check_model, model, cfg.depth.model)
        if plan.todo:
            init_ray(cfg.address)
        checked.result()
    return Prepared(cfg, model, config_hash, plan, new_run_id(), previous)


def _check_model(model: ModelRef, spec: str) -> None:
    try:
        check_loadable(materialize(model, RANDOM_BUILDERS))
    except Exception as exc:
        raise UsageError(f"depth model {spec} cannot be loaded: {str(exc).strip().splitlines()[0]}") from None


def _normalized(cfg: RunConfig) -> RunConfig:
    from dataclasses import replace

    return replace(cfg, input=storage.normalize(cfg.input), output=storage.normalize(cfg.output))


def stage_plans(prep: Prepared, shape: ClusterShape, staging: str) -> list[StagePlan]:
    """Resources per stage, from the config where given and from the cluster otherwise."""
    cfg, d = prep.cfg, prep.cfg.depth
    on_gpu = shape.gpus > 0 if d.gpus is None else d.gpus > 0
    gpus = (d.gpus if d.gpus is not None else 1.0) if on_gpu else 0.0
    pool = d.pool_size or (max(1, int(shape.gpus // gpus)) if on_gpu else 1)
    threads = d.threads or (None if on_gpu else shape.cpus_per_node)
    # Ray sets OMP_NUM_THREADS=1 in a 1-CPU actor; torch.set_num_threads alone then leaves some
    # kernels single-threaded (measured: 3.3 vs 2.4 s per 720p frame on 2 cores).
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    constants = {"depth_model": prep.model.identity, "run_id": prep.run_id, "config_hash": prep.config_hash}
    return [
        # A decoder that crashes its worker is retried twice, then its clip is reported failed
        # (Ray's default is to retry forever). This also keeps decoding out of the depth actors.
        StagePlan(
            Decode, dict(fps=cfg.fps, max_frames=cfg.max_frames_per_clip), batch_size=1, remote_args={"max_retries": 2}
        ),
        StagePlan(
            Depth,
            dict(model=prep.model, precision=d.precision, threads=threads),
            actors=pool,
            num_gpus=gpus,
            batch_size=d.batch_size or DEFAULT_BATCH_SIZE["gpu" if on_gpu else "cpu"],
            env=env,
        ),
        StagePlan(Encode, batch_size=8),
        StagePlan(WriteParts, dict(staging=staging, constants=constants), num_cpus=0.5, batch_size=32),
    ]


def build_dataset(clips: list[Clip], plans: list[StagePlan]):
    import ray

    items = [{"clip_id": c.clip_id, "clip_uri": c.clip_uri} for c in clips]
    # One clip per block: a worker that crashes takes only its own clip down.
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 100_000)))
    for p in plans:
        if p.actors:  # the class itself: Ray constructs it once per actor (loading the model there)
            fn = p.stage
            extra = dict(compute=ray.data.ActorPoolStrategy(size=p.actors), fn_constructor_kwargs=p.kwargs)
        else:  # a cheap instance, shipped to stateless tasks
            fn, extra = p.stage(**p.kwargs), {}
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


def clip_row(clip: Clip, progress: ClipProgress | None, prep: Prepared, n_frames: int, error: str | None) -> dict:
    video = progress.video if progress and not error else {}
    return {
        "clip_id": clip.clip_id,
        "clip_uri": clip.clip_uri,
        "size_bytes": clip.size_bytes,
        "etag": clip.etag,
        "status": "failed" if error else "ok",
        "error": error,
        "n_frames": n_frames,
        "depth_model": prep.model.identity,
        "run_id": prep.run_id,
        "config_hash": prep.config_hash,
        **{k: video.get(k) for k in ("source_frames", "fps", "duration_s", "width", "height")},
    }


def execute(prep: Prepared, log=print) -> RunSummary:
    """Run the planned clips through Ray; commit each clip as it finishes."""
    import ray

    cfg = prep.cfg
    summary = RunSummary(prep.run_id, cfg.output, clips_skipped=prep.plan.skipped)
    started = time.monotonic()
    log(f"plan: {prep.plan.describe()}")
    _save_run_file(prep, "config.json", _config_record(prep))
    if not prep.plan.todo:
        summary.seconds = time.monotonic() - started
        return summary

    init_ray(cfg.address)
    staging = storage.join(cfg.output, "_staging", prep.run_id)
    plans = stage_plans(prep, cluster_shape(), staging)
    for p in plans:
        log(f"stage {p.describe()}")
    by_id = {c.clip_id: c for c in prep.plan.todo}
    previous = prep.previous
    committer = ray.remote(num_cpus=0.25, max_retries=3)(commit.commit_clip)
    tracker, pending, finished_rows = ClipTracker(), {}, []

    def settle(block: bool) -> None:
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=None if block else 0)
        for ref in ready:
            clip_id, error = pending.pop(ref)
            n = ray.get(ref)
            _record(summary, clip_id, error, n)
            finished_rows.append(clip_row(by_id[clip_id], tracker.clips.get(clip_id), prep, n, error))

    def finish(clip_id: str, error: str | None) -> None:
        ref = committer.remote(cfg.output, staging, clip_id, error is None)
        pending[ref] = (clip_id, error)

    last_progress = last_checkpoint = time.monotonic()
    ds = build_dataset(prep.plan.todo, plans)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                done = tracker.add(row)
                if done is not None:
                    finish(done.clip_id, None if done.ok else done.error or "some frames failed")
            settle(block=False)
            now = time.monotonic()
            if now - last_progress >= PROGRESS_S:
                last_progress = now
                _progress(log, tracker, summary, len(by_id), now - started)
            if now - last_checkpoint >= CHECKPOINT_S and finished_rows:
                last_checkpoint = now
                commit.write_clips(cfg.output, commit.merge_clips(previous, finished_rows))
        for clip_id in tracker.unfinished(list(by_id)):
            finish(clip_id, "no result: a worker crashed or its rows were lost while processing this clip")
    finally:
        settle(block=True)
        if finished_rows:
            commit.write_clips(cfg.output, commit.merge_clips(previous, finished_rows))
        storage.delete_prefix(staging)
        summary.seconds = time.monotonic() - started
        _save_run_file(prep, "summary.json", _summary_record(summary))
    return summary


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
        "depth_model": prep.model.identity,
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
    }


def _save_run_file(prep: Prepared, name: str, record: dict) -> None:
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    storage.write_bytes(storage.join(prep.cfg.output, "runs", prep.run_id, name), data)


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
