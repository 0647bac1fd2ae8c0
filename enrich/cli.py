"""The `enrich` command.

Exit codes: 0 every clip ok or up to date; 1 the run finished but some clips failed;
2 nothing was done (bad option, config, input, output or model); 3 storage or the Ray cluster
failed under the run (what it committed is kept; the same command resumes); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from enrich import errors, supervise
from enrich.config import DECODERS, STAGES, build, load_file
from enrich.stages import REGISTRY
from enrich.submit import DEFAULT_ADDRESS

# The options of `run` and `submit` that are not the run's config.
RUN_ONLY = frozenset({"quiet", "verbose", "plan", "if_idle"})
SUBMIT_ONLY = frozenset({"address", "wait", "job_id", "scheduled", "runtime_env"})
JOBS_ADDRESS_HELP = f"the head's Jobs API (default: $RAY_ADDRESS when it is http://, else {DEFAULT_ADDRESS})"
JOBS_EPILOG = "exit codes: 0 ok, 2 cannot reach the cluster or no such job; logs --follow: the job's run's own code"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"enrich: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(errors.EXIT_CANNOT_RUN)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="enrich", description="Depth, optical flow, pose and captions for monocular video catalogues, on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="enrich every clip under INPUT into manifests under OUTPUT",
        description="Enrich every video under INPUT (a folder, a file or s3://bucket/prefix) into Parquet "
        "manifests under OUTPUT (a folder or s3:// prefix). Clips already done with the same content, "
        "config and model are skipped.",
        epilog="exit codes: 0 all ok, 1 some clips failed, 2 could not run, 3 storage or the Ray cluster failed "
        "under the run (the same command resumes), 130 interrupted",
    )
    run.add_argument(
        "--address", default=argparse.SUPPRESS, help="existing Ray cluster (default: an embedded local Ray)"
    )
    run.add_argument(
        "--plan", action="store_true", help="print what would be processed, and why, and the stage graph, then exit"
    )
    run.add_argument(
        "--if-idle",
        action="store_true",
        help="when another run holds OUTPUT, exit 0 without doing anything (for schedulers)",
    )
    add_run_options(run)
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")
    run.add_argument("-v", "--verbose", action="store_true", help="also print each pipeline stage and its columns")
    run.set_defaults(func=cmd_run)
    submit = commands.add_parser(
        "submit",
        help="submit a run to a Ray cluster as a job, through its Jobs API",
        description="Submit `enrich run INPUT OUTPUT [options]` as a Ray job. The options are checked here first; "
        "the job runs this checkout's code with the cluster's own dependencies and credentials.",
        epilog="exit codes: 0 submitted (with --wait: the run's own 0, 1 or 2), 2 not submitted, "
        "130 the job was stopped or Ctrl-C while following it (the job goes on)",
    )
    submit.add_argument("--address", default=None, help=JOBS_ADDRESS_HELP)
    submit.add_argument("--wait", action="store_true", help="follow the job's logs and exit with its result")
    submit.add_argument("--job-id", default=None, help="the job's id (default: one Ray makes up)")
    submit.add_argument(
        "--scheduled",
        action="store_true",
        help="run jobs/reenrich.py: exit 0 when another run holds OUTPUT, and refresh OUTPUT/report.html",
    )
    submit.add_argument(
        "--runtime-env", default=None, help="YAML file of Ray runtime_env additions (pip, env_vars, ...)"
    )
    add_run_options(submit)
    submit.set_defaults(func=cmd_submit)
    jobs = commands.add_parser("jobs", help="list, inspect, follow or stop the enrich jobs of a Ray cluster")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=_Parser)
    for name, help_text in (
        ("list", "the cluster's enrich jobs, oldest first"),
        ("status", "one job's status, message and exit code"),
        ("logs", "one job's logs so far (--follow: until it ends)"),
        ("stop", "ask the cluster to stop a job"),
    ):
        sub = job_commands.add_parser(name, help=help_text, epilog=JOBS_EPILOG)
        sub.add_argument("--address", default=None, help=JOBS_ADDRESS_HELP)
        if name == "list":
            sub.add_argument("--all", action="store_true", help="every job of the cluster, not only enrich's")
        else:
            sub.add_argument("job_id", metavar="JOB_ID")
        if name == "logs":
            sub.add_argument("--follow", action="store_true", help="stream until the job ends; exit with its result")
        sub.set_defaults(func=cmd_jobs)
    report = _manifest_command(
        commands,
        "report",
        cmd_report,
        help="write an HTML page of a manifest's flags, flicker figures and example frames",
        epilog="exit codes: 0 written, 2 OUTPUT is not a manifest or cannot be read",
    )
    report.add_argument("-o", "--out", default=None, help="where to write it (default: OUTPUT/report.html)")
    query = _manifest_command(
        commands,
        "query",
        cmd_query,
        help="SQL over a manifest's tables `frames`, `captions` and `clips` (DuckDB; local or s3://)",
        epilog="exit codes: 0 ok, 2 not a manifest, SQL that does not parse or names a missing column",
    )
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    query.add_argument("--out", default=None, help="write to this file (local or s3://) instead of stdout")
    query.add_argument(
        "--as-of",
        default=None,
        metavar="VERSION|TAG|TIME",
        help="read the manifest as it was: a clips-table version (a run's summary.json records its own), "
        "a tag (enrich tag), or a time such as 2026-12-01T12:00:00Z (default: the latest)",
    )
    _manifest_command(
        commands,
        "migrate",
        cmd_migrate,
        help="upgrade a manifest written by an older enrich to Delta Lake tables, in place (copies no frames)",
        epilog="exit codes: 0 upgraded or nothing to do, 2 not a manifest, or another run holds it",
    )
    compact = _manifest_command(
        commands,
        "compact",
        cmd_compact,
        help="merge the clips table's small files and vacuum files the tables no longer name",
        epilog="exit codes: 0 done, 2 not a manifest, or another run holds it",
    )
    compact.add_argument(
        "--retention-hours",
        type=int,
        help="keep removed files this long, so snapshots this recent stay readable (default: 168, 7 days)",
    )
    tag = _manifest_command(
        commands,
        "tag",
        cmd_tag,
        help="name a snapshot of a manifest, for good: --as-of NAME reads it, and compact keeps its files",
        epilog="exit codes: 0 tagged, 2 not a manifest, a bad or existing name, or no such version",
    )
    tag.add_argument("name", metavar="NAME")
    tag.add_argument("--as-of", default=None, metavar="VERSION|TIME", help="the snapshot to name (default: the latest)")
    _manifest_command(
        commands,
        "status",
        cmd_status,
        help="clips ok / failed / stale, frames and flag rates of a manifest",
        epilog="exit codes: 0, 2",
    )
    show = _manifest_command(
        commands,
        "show",
        cmd_show,
        help="render one frame beside its colourised depth (and flow and pose when present) as a PNG",
        epilog="exit codes: 0 written, 2 not a manifest, unknown clip or frame",
    )
    show.add_argument("clip_id", metavar="CLIP_ID")
    show.add_argument("frame_index", metavar="FRAME_INDEX", type=int)
    show.add_argument("-o", "--out", required=True, help="PNG file to write (local or s3://)")
    models = commands.add_parser(
        "models", help="list every model id the stages accept (defaults, checkpoints, smoke models) and licences"
    )
    models.set_defaults(func=cmd_models)
    return parser


def _manifest_command(commands, name: str, func, **texts) -> argparse.ArgumentParser:
    """A command that works on the manifest at OUTPUT (its first argument)."""
    command = commands.add_parser(name, **texts)
    command.add_argument("output", metavar="OUTPUT")
    command.set_defaults(func=func)
    return command


def add_run_options(run: argparse.ArgumentParser) -> None:
    """INPUT, OUTPUT and every option of a run (shared by `run` and `submit`)."""
    run.add_argument("input", metavar="INPUT")
    run.add_argument("output", metavar="OUTPUT")
    s = argparse.SUPPRESS  # absent flags must not override the config file
    run.add_argument("--config", default=None, help="YAML or TOML file with the same keys as these flags")
    run.add_argument("--fps", type=float, default=s, help="frames sampled per second (default: every frame)")
    run.add_argument("--max-frames-per-clip", type=int, default=s, help="keep the first N sampled frames")
    run.add_argument("--force", action="store_true", default=s, help="redo every clip, even up-to-date ones")
    run.add_argument(
        "--decoder",
        choices=DECODERS,
        default=s,
        help="decord (default: decord indexes, PyAV decodes) or torchcodec (seeks to keyframes; needs "
        "FFmpeg's shared libraries, README: Decoders); both give the same frames",
    )
    run.add_argument(
        "--retry-limit",
        type=int,
        default=s,
        help="leave a clip alone after it failed this many times with the same content and config (default: 3)",
    )
    run.add_argument(
        "--stages",
        default=s,
        help=f"model stages to run, a comma-separated subset of {','.join(STAGES)} (default: depth)",
    )
    for name, stage in REGISTRY.items():
        add_stage_options(run.add_argument_group(f"{name} stage"), name, stage)
    run.add_argument(
        "--temporal",
        dest="temporal_mode",
        choices=("off", "align", "smooth"),
        default=s,
        help="temporal consistency of relative depth: off, align (default) or smooth",
    )
    run.add_argument(
        "--temporal-sigma", dest="temporal_sigma", type=float, default=s, help="smooth: Gaussian sigma in frames (2)"
    )
    run.add_argument(
        "--cut-threshold",
        dest="temporal_cut_threshold",
        type=float,
        default=s,
        help="scene cut: structural distance between consecutive frames, 0..1 "
        "(default: 0.15; README: Temporal consistency)",
    )


def add_stage_options(group, name: str, stage) -> None:
    """A model stage's own flags (its `ModelStage.flags`), then those every model stage has."""
    s = argparse.SUPPRESS
    for flag in stage.flags:
        group.add_argument(flag.flag, dest=f"{name}_{flag.key}", default=s, help=flag.help, **flag.argparse)
    group.add_argument(
        f"--{name}-batch-size", type=int, default=s, help="items per forward pass (default: small on CPU, large on GPU)"
    )
    group.add_argument(
        f"--{name}-gpus", type=float, default=s, help="GPUs per actor; fractions share a GPU (default: see README)"
    )
    group.add_argument(
        f"--{name}-pool-size",
        type=int,
        default=s,
        help="actors (default: enough for every GPU; on CPU one running a call per core the stage can use)",
    )
    group.add_argument(
        f"--{name}-precision", choices=stage.config.precisions, default=s, help=stage.config.precision_help
    )
    group.add_argument(
        f"--{name}-compile",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="torch.compile the model: one compile per input size, at the actor's first batch of it "
        "(default: off; README: Precision)",
    )
    group.add_argument(
        f"--{name}-threads",
        type=int,
        default=s,
        help="torch threads per CPU model replica (default: 1, more past 8 replicas per node)",
    )


def cmd_models(args: argparse.Namespace) -> int:
    from enrich.licences import table

    for line in table():
        print(line)
    from enrich.licences import NON_COMMERCIAL

    print(f"{' and '.join(NON_COMMERCIAL)} checkpoints are for non-commercial use only; runs that use one say so.")
    print("Other hub ids of the same architectures are accepted too: check their model cards.")
    return errors.EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from enrich import storage
    from enrich.report import write_report

    with storage.s3_errors(args.output):
        print(f"report: {write_report(args.output, args.out)}")
    return errors.EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from enrich.query import query_snapshot, write

    table, versions = query_snapshot(args.output, args.sql, args.as_of)
    text = write(table, args.format, args.out, versions)
    if text is not None:
        sys.stdout.write(text)
    return errors.EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    from enrich import storage
    from enrich.manifest import compact

    output = storage.normalize(args.output)
    hours = compact.RETENTION_HOURS if args.retention_hours is None else args.retention_hours
    if hours < 0:
        raise errors.UsageError("--retention-hours must be 0 or more")
    with storage.s3_errors(output):
        print(compact.run(output, hours).line(output))
    return errors.EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    from enrich import storage
    from enrich.manifest import delta
    from enrich.manifest.commit import require_manifest

    output = storage.normalize(args.output)
    with storage.s3_errors(output):
        require_manifest(output)
        versions = delta.tag(output, args.name, args.as_of)
    print(f"{output}: tagged version {versions.clips} as {args.name} (enrich query {output} SQL --as-of {args.name})")
    return errors.EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from enrich import storage
    from enrich.manifest import migrate

    with storage.s3_errors(args.output):
        print(migrate.run(storage.normalize(args.output)))
    return errors.EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from enrich.status import status_lines

    for line in status_lines(args.output):
        print(line)
    return errors.EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from enrich.show import render, write_png

    write_png(render(args.output, args.clip_id, args.frame_index), args.out)
    print(f"wrote {args.out}")
    return errors.EXIT_OK


def run_values(args: argparse.Namespace, own: frozenset[str]) -> dict:
    """The run's flat keys: the config file's, updated by the flags given (not the command's `own`)."""
    values = load_file(args.config) if args.config else {}
    skip = {"command", "func", "config", *own}
    values.update({k: v for k, v in vars(args).items() if k not in skip})
    return values


def check_stage_flags(args: argparse.Namespace, stages: tuple[str, ...]) -> None:
    """A flag for a stage that will not run is almost always a forgotten --stages."""
    unused = sorted(k for k in vars(args) if k.split("_")[0] in STAGES and k.split("_")[0] not in stages)
    if unused:
        stage = unused[0].split("_")[0]
        raise errors.UsageError(
            f"{unused[0]} is an option of the {stage} stage, which is not in --stages ({','.join(stages)})"
        )


def cmd_submit(args: argparse.Namespace) -> int:
    from enrich import submit

    values = run_values(args, SUBMIT_ONLY)
    check_stage_flags(args, build(values).stages)
    address = submit.address_of(args.address)
    try:
        job_id = submit.submit(values, address, args.scheduled, args.job_id, args.runtime_env)
    except KeyboardInterrupt:
        print(f"enrich: interrupted; the job may have been submitted (enrich jobs list --address {address})",
              file=sys.stderr)  # fmt: skip
        return errors.EXIT_INTERRUPTED
    print(job_id, flush=True)
    if not args.wait:
        print(f"follow it with: enrich jobs logs --follow {job_id} --address {address}", file=sys.stderr)
        return errors.EXIT_OK
    return submit.wait(address, job_id)


def cmd_jobs(args: argparse.Namespace) -> int:
    from enrich import submit

    address = submit.address_of(args.address)
    if args.jobs_command == "list":
        lines = submit.list_lines(address, args.all)
    elif args.jobs_command == "status":
        lines = submit.status_lines(address, args.job_id)
    elif args.jobs_command == "stop":
        lines = [submit.stop(address, args.job_id)]
    elif args.follow:
        return submit.wait(address, args.job_id)
    else:
        sys.stdout.write(submit.logs(address, args.job_id))
        return errors.EXIT_OK
    for line in lines:
        print(line)
    return errors.EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from enrich import pipeline

    cfg = build(run_values(args, RUN_ONLY))
    check_stage_flags(args, cfg.stages)
    if args.plan:
        prep = pipeline.prepare(cfg, plan_only=True)
        for line in prep.plan.lines() + pipeline.operator_lines(prep):
            print(line)
        return errors.EXIT_OK
    log = (lambda message: None) if args.quiet else pipeline.stderr_log
    try:
        prep = pipeline.prepare(cfg, log=log)
    except errors.Busy as exc:
        if not args.if_idle:
            raise
        print(f"enrich: skipped, nothing done: {exc}", file=sys.stderr)
        return errors.EXIT_OK
    try:
        summary = pipeline.execute(prep, log=log, verbose=args.verbose)
    finally:
        prep.release()
    for line in summary.lines():
        print(line, flush=True)
    return errors.EXIT_CLIPS_FAILED if summary.clips_failed else errors.EXIT_OK


def dispatch(argv: list[str] | None = None) -> int:
    """Parse and run a command; a UsageError propagates (see `main`)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # bare `enrich`: what it can do, not an error
        parser.print_help()
        return errors.EXIT_OK
    args = parser.parse_args(argv)
    return args.func(args)


def usage_error(exc: errors.UsageError) -> int:
    print(f"enrich: error: {exc}", file=sys.stderr)
    return errors.EXIT_CANNOT_RUN


def entry() -> int:
    """The `enrich` command: `enrich run` drives its run from a supervised child process (see
    `enrich.supervise`), so a driver that dies under the run still ends with one line and exit 3."""
    argv = sys.argv[1:]
    if supervise.wanted(argv):
        return supervise.run(argv)
    supervise.child_started()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse; or Ray's SIGTERM handler in a driver, after the run's finally blocks
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else errors.EXIT_CLIPS_FAILED
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        if code == signal.SIGTERM:  # Ray's handler is sys.exit(signum)
            code = interrupted("stopped by SIGTERM")
    except KeyboardInterrupt:  # a second Ctrl-C, while the first was being handled
        code = errors.EXIT_INTERRUPTED
    except BaseException:  # a bug: its traceback and exit 1, as unsupervised, not "the driver died"
        supervise.report(exit=errors.EXIT_CLIPS_FAILED)
        raise
    supervise.report(exit=code)
    return code


def interrupted(how: str) -> int:
    print(f"enrich: {how}; finished clips are committed, run again to do the rest", file=sys.stderr)
    return errors.EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    try:
        return dispatch(argv)
    except errors.UsageError as exc:
        return usage_error(exc)
    except errors.InfrastructureError as exc:
        print(f"enrich: error: {exc}", file=sys.stderr)
        return errors.EXIT_INFRASTRUCTURE
    except KeyboardInterrupt:
        return interrupted("interrupted")
