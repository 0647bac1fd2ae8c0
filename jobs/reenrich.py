"""Scheduled re-enrichment: the entry point a scheduler fires (a KubeRay RayCronJob, a cron line
through `enrich submit --scheduled`, Airflow, ...).

    python jobs/reenrich.py INPUT OUTPUT [enrich run options]

It is `enrich run`, which processes only what changed since the last run (new clips, changed
clips, clips whose models or config changed, failed clips under the retry limit), made safe to fire
on a timer:

* a firing that finds OUTPUT still held by the previous run exits 0 at once and does nothing, so
  slow runs never pile up and overlaps never alert;
* after a run, OUTPUT/report.html is rewritten (`enrich report`);
* otherwise the exit code is the run's: 1 when clips failed in this run, 2 when it could not run
  (a crash included: the traceback is in the job's logs).
"""

import sys
import traceback


def reenrich(argv: list[str]) -> int:
    from enrich import errors
    from enrich.cli import build_parser, dispatch, usage_error
    from enrich.report import write_report

    output = build_parser().parse_args(["run", *argv]).output
    try:
        code = dispatch(["run", *argv])
    except errors.Busy as exc:
        print(f"enrich: skipped, nothing done: {exc}", file=sys.stderr)
        return errors.EXIT_OK
    except errors.UsageError as exc:
        return usage_error(exc)
    try:
        print(f"report: {write_report(output)}", flush=True)
    except errors.UsageError as exc:  # nothing to report on yet
        print(f"enrich: no report: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    try:
        sys.exit(reenrich(sys.argv[1:]))
    except Exception:  # a missing dependency or a bug: "could not run", not "some clips failed"
        traceback.print_exc()
        sys.exit(2)
