"""Everything checked on the driver before any work: input, output, models, options, the plan.

A run that fails here, and `--plan`, leave OUTPUT as they found it. The driver never loads a model:
it checks each model's config, and the actors check the weights as they load them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from enrich import storage, supervise
from enrich.catalog import list_clips
from enrich.config import RunConfig
from enrich.errors import UsageError
from enrich.lock import Lock
from enrich.manifest import commit, migrate
from enrich.ops import video
from enrich.pipeline.graph import size_stages
from enrich.pipeline.records import new_run_id
from enrich.plan import COLUMNS as PLAN_COLUMNS
from enrich.plan import ClipPlan, make_plan
from enrich.resources import ActorSizing
from enrich.runtime import (
    ClusterShape,
    cluster_shape,
    init_ray,
)
from enrich.stages import model_stage
from enrich.stages.spec import ModelStage
from enrich.weights import ModelRef


@dataclass(frozen=True)
class Prepared:
    cfg: RunConfig
    models: dict[str, dict[str, ModelRef]]  # stage -> role -> pinned model
    config_hash: str
    plan: ClipPlan
    run_id: str
    lock: Lock | None = None  # held from before the clips table is read until the run ends
    notes: dict[str, str] = field(default_factory=dict)  # stage -> its attention kernel, for --verbose
    # stage -> its pool and resources, sized once against the cluster at launch (`enrich.resources`);
    # the graph uses them when it is built for the same cluster
    sizing: dict[str, ActorSizing] | None = None
    sized_for: ClusterShape | None = None  # the cluster `sizing` was computed for
    hashes: dict[str, str] = field(default_factory=dict)  # part -> its hash (`RunConfig.part_hashes`)

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
        config_hash, hashes = cfg.output_hash(ids), cfg.part_hashes(ids)
        with storage.s3_errors(cfg.output):
            lock = None if plan_only else Lock(cfg.output).acquire()
            if lock:
                supervise.report(output=cfg.output, lock_token=lock.token)
            run_id = new_run_id()
            if not migrate.needed(cfg.output):
                previous = commit.read_clips(cfg.output, PLAN_COLUMNS)
            elif plan_only:  # a manifest of an older enrich: a plan reads it as it is ...
                previous = migrate.legacy_clips(cfg.output)
            else:  # ... and a run upgrades it in place, under the lock
                migrate.upgrade(cfg.output, run_id, log)
                previous = commit.read_clips(cfg.output, PLAN_COLUMNS)
        plan = make_plan(clips, previous, hashes, cfg.force, cfg.retry_limit)
        prep = Prepared(cfg, models, config_hash, plan, run_id, lock, hashes=hashes)
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
                # pools that cannot fit fail here, before any work; the graph is built from this sizing
                shape = cluster_shape()
                prep = replace(prep, sizing=size_stages(cfg, stages, shape), sized_for=shape)
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


def attention_notes(prep: Prepared) -> dict[str, str]:
    notes = {}
    for name in prep.cfg.stages:
        stage = model_stage(name)
        if stage.attention:
            try:
                notes[name] = stage.attention(prep.models[name])
            except Exception as exc:  # a diagnostic: never the reason a run fails
                notes[name] = f"attention unknown ({type(exc).__name__})"
    return notes


def _normalized(cfg: RunConfig) -> RunConfig:
    return replace(cfg, input=storage.normalize(cfg.input), output=storage.normalize(cfg.output))
