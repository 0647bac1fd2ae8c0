"""`enrich run`: check what can be checked on the driver, then one Ray Data streaming pipeline.

    clips (metadata only) -> decode (CPU tasks)
        -> for each model stage of the run (flow, caption, depth, pose: `enrich.stages.pipeline_order`):
           its actor pool (GPU when present), then its CPU encoder if it has one
        -> write parts (CPU tasks) -> per-clip counts to the driver

The driver only ever sees clip metadata and per-clip counts; frames and outputs stay in the object
store and the workers. As soon as all rows of a clip are staged, a small Ray task writes the clip's
files, and every few seconds the driver publishes the clips written since in one commit per table
(`enrich.manifest.publish`), so a crash loses at most the clips in flight and those not yet published.

The driver never loads a model: it checks each model's config, and the actors check the weights as
they load them (`enrich.stages.base.loading`); one that cannot ends the run before any commit.

  preflight.py   the checks before any work, and the prepared run (`prepare`, `Prepared`)
  graph.py       the stage graph and its Ray Data operators (`stage_plans`, `build_dataset`)
  driver.py      the loop that streams, writes and publishes (`execute`)
  records.py     the run's summary, clips rows and files under OUTPUT/runs/
"""

from enrich.pipeline.driver import execute, infrastructure_failures, stderr_log
from enrich.pipeline.graph import build_dataset, cpu_only, operator_lines, stage_plans, with_drops
from enrich.pipeline.preflight import Prepared, prepare
from enrich.pipeline.records import RunSummary, config_record, smoke_notes

__all__ = [
    "Prepared",
    "RunSummary",
    "build_dataset",
    "config_record",
    "cpu_only",
    "execute",
    "infrastructure_failures",
    "operator_lines",
    "prepare",
    "smoke_notes",
    "stage_plans",
    "stderr_log",
    "with_drops",
]
