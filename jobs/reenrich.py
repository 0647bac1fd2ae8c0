"""Scheduled re-enrichment: the entry point a scheduler fires (a KubeRay RayCronJob, a cron line
through `enrich submit --scheduled`, Airflow, ...).

    python jobs/reenrich.py INPUT OUTPUT [enrich run options]

It is `enrich run`, which processes only what changed since the last run (new clips, changed
clips, clips whose models or config changed, failed clips under the retry limit), made safe to fire
on a timer:

* a run that finds OUTPUT still held by the previous run exits 0 at once and does nothing
  (`enrich run --if-idle`), so slow runs never pile up and overlaps never alert;
* after a run, OUTPUT/report.html is rewritten (`enrich report`);
* otherwise the exit code is the run's: 1 when clips failed in this run, 2 when it could not run.
"""

import sys

from enrich import errors
from enrich.cli import build_parser, main
from enrich.report import write_report


def reenrich(argv: list[str]) -> int:
    output = build_parser().parse_args(["run", *argv]).output
    code = main(["run", "--if-idle", *argv])
    if code in (errors.EXIT_OK, errors.EXIT_CLIPS_FAILED):
        try:
            print(f"report: {write_report(output)}", flush=True)
        except errors.UsageError as exc:  # nothing to report yet (every clip was skipped, say)
            print(f"enrich: no report: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(reenrich(sys.argv[1:]))
