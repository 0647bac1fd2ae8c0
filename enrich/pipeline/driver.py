"""The driver loop: stream the planned clips through the stage graph, write each clip's files as it
finishes, publish the finished clips in a commit every few seconds, and turn Ray or storage failing
under the run into one line."""

from __future__ import annotations

import re
import sys
import threading
import time
from contextlib import contextmanager

from enrich import licences, storage, supervise
from enrich.errors import InfrastructureError, UsageError
from enrich.manifest import commit, compact, index, layout
from enrich.manifest.publish import Finished, Publisher
from enrich.manifest.schema import TABLES
from enrich.pipeline.graph import build_dataset, stage_plans
from enrich.pipeline.preflight import Prepared, attention_notes
from enrich.pipeline.records import (
    RunSummary,
    alone_row,
    clip_row,
    config_record,
    previous_rows,
    record,
    save_run_file,
    smoke_notes,
    summary_record,
)
from enrich.runtime import (
    cluster_shape,
    init_ray,
    local_ray_logs,
    local_raylet_pid,
    set_store_budget,
)
from enrich.stages import model_stage
from enrich.stages.temporal import FinishClip
from enrich.tracker import ClipTracker

PUBLISH_S = 10.0  # how often the clips finished since the last commit are published (the first at once) ...
PUBLISH_CLIPS = 500  # ... or sooner, when this many are waiting


PROGRESS_S = 5.0


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
    save_run_file(prep, "config.json", config_record(prep))
    if not prep.plan.todo:
        summary.seconds = time.monotonic() - started
        return summary

    init_ray(cfg.address)
    staging_root = layout.staging_root(cfg.output)
    storage.delete_prefix(staging_root)  # we hold the lock: anything staged there is a dead run's
    staging = layout.staging_dir(cfg.output, prep.run_id)
    supervise.report(
        staging=staging, staging_root=staging_root, raylet_pid=local_raylet_pid(), ray_logs=local_ray_logs()
    )
    shape = cluster_shape()
    set_store_budget(shape)
    if verbose:  # builds each model on the meta device: imports torch and transformers, so only here
        prep.notes.update(attention_notes(prep))
    groups = [(stages, whole, clips, stage_plans(prep, shape, staging, stages, whole))
              for stages, whole, clips in prep.plan.groups(cfg.stages)]  # fmt: skip
    nice = max(p.nice for g in groups for p in g[3])  # commits are CPU tasks too
    by_id = {c.clip_id: c for c in prep.plan.todo}
    writer = ray.remote(num_cpus=0.25, max_retries=3)(commit.write_clip)
    finish_clip = FinishClip(cfg.temporal, cfg.audit)
    publisher = Publisher(cfg.output, prep.run_id, staging)
    tracker, pending, unpublished = ClipTracker(), {}, []
    kept = previous_rows(cfg.output, prep.plan.only)

    def settle(block: bool) -> None:
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=None if block else 0)
        for ref in ready:
            clip_id, error, stages = pending.pop(ref)
            with infrastructure_failures():
                n, figures, files = ray.get(ref)
            if "warning" in figures:
                summary.notes.append(figures.pop("warning")[:300])
            record(summary, clip_id, error, n)
            if clip_id in kept:
                if not error:
                    summary.alone["+".join(stages)] += 1
                row = alone_row(kept[clip_id], by_id[clip_id], prep, stages, error)
            else:
                row = clip_row(by_id[clip_id], tracker.clips.get(clip_id), prep, n, error, figures)
            unpublished.append(Finished(row, files))

    def finish(clip_id: str, error: str | None, stages: tuple[str, ...], whole: bool) -> None:
        tables = tuple(t for t in (model_stage(n).table for n in stages) if t)
        withdraw = tuple(t for t in TABLES if t not in tables) if whole and prep.plan.renewed(clip_id) else ()
        ref = writer.remote(
            cfg.output, staging, clip_id, prep.run_id, error is None, finish_clip if whole else None, nice, whole,
            tables, withdraw,
        )  # fmt: skip
        pending[ref] = (clip_id, error, stages)

    def publish() -> None:
        if unpublished:
            with infrastructure_failures():
                summary.versions = publisher.publish(unpublished)
            summary.published += len(unpublished)
            unpublished.clear()
            supervise.report(committed=summary.published)  # in the clips table: kept if we die

    last_publish = float("-inf")  # the first finished clips are published at once, then every PUBLISH_S
    ticker = _Ticker(PROGRESS_S, lambda: _progress(log, tracker, summary, len(by_id), time.monotonic() - started))
    outage: InfrastructureError | None = None
    try:
        for stages, whole, clips, plans in groups:  # one Ray Data pass per group, in turn
            for p in plans if verbose else ():
                log(f"stage {p.describe()}")
            log(f"loading {len(stages)} model{'s' if len(stages) > 1 else ''} ({', '.join(stages)}) "
                f"for {_clips(len(clips))}{'' if whole else ' (' + '+'.join(stages) + ' only)'}")  # fmt: skip
            ds = build_dataset(clips, plans)
            batches = ds.iter_batches(batch_size=None, batch_format="pyarrow")
            for batch in _guarded(_model_load_errors(batches)):
                for row in batch.to_pylist():
                    if str(row["error"]).startswith(storage.UNREACHABLE):
                        raise InfrastructureError(row["error"].split(" for ")[0])
                    done = tracker.add(row)
                    if done is not None:
                        finish(done.clip_id, None if done.ok else done.error or "some frames failed", stages, whole)
                settle(block=False)
                due = time.monotonic() - last_publish >= PUBLISH_S or len(unpublished) >= PUBLISH_CLIPS
                if unpublished and due:
                    last_publish = time.monotonic()
                    publish()
            lost = "no result: a worker crashed or its rows were lost while processing this clip"
            for clip_id in tracker.unfinished([c.clip_id for c in clips]):
                finish(clip_id, lost, stages, whole)
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
                settle(block=True)  # on Ctrl-C: the clips being written finish, and are published
                publish()
                storage.delete_prefix(staging)
                storage.remove_empty_folders(staging_root)
                summary.seconds = time.monotonic() - started
                save_run_file(prep, "summary.json", summary_record(summary))
        except InfrastructureError as exc:
            outage = outage or exc
            supervise.report(outage=str(outage))
    if outage:
        raise InfrastructureError(
            f"{outage}; {_clips(summary.published)} committed by this run are kept and "
            "the clips in flight were not published; run the same command again to resume"
        ) from None
    with infrastructure_failures():  # beyond a threshold, a run compacts what it added to
        merged, into = compact.compact_clips(
            cfg.output, prep.run_id, at_least=compact.AUTO_FILES + 1, superseded=bool(summary.published)
        )
        added = index.update(cfg.output, prep.run_id, at_least=index.AUTO_NEW_FILES)[0] if summary.published else 0
    if merged:
        summary.notes.append(f"clips table compacted: {merged} files (with older rows, or small) rewritten into {into}")
    if added:
        summary.notes.append(f"frames_meta (the index queries read) updated with {added} clips' frames")
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


def _progress(log, tracker: ClipTracker, summary: RunSummary, total: int, elapsed: float) -> None:
    done = summary.clips_ok + summary.clips_failed
    rate = tracker.frames_ok / elapsed if elapsed > 0 else 0.0
    log(
        f"progress: {done}/{total} clips done ({summary.clips_failed} failed), "
        f"{tracker.frames_ok} frames, {rate:.2f} frames/s, {elapsed:.0f}s"
    )


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
