"""`enrich run` under a small parent process that outlives the driver.

When the local Ray node dies under a driver (its raylet, and with it the object store), Ray's core
worker ends the driver's process from C++: no Python handler runs, and its exit code, 1, reads as
"some clips failed". A driver the kernel kills for memory ends the same way, with no line at all.
So the `enrich` command runs the driver as a child process and waits for it:

- the child reports over a pipe what cleaning up after it needs (its lock and its staging
  folder), how many clips it has committed, an outage it is handling (S3 gone away: the line
  leads with it should the driver die before it ends the run itself), and, last, the exit code
  it chose;
- a child that ends without reporting an exit code died under the run. The parent removes the
  child's staging, releases its lock, prints one line and exits EXIT_INFRASTRUCTURE (3); the
  committed clips are kept and the same command resumes;
- a child that ended its run itself has removed its staging; should anything be back there (a
  stage task's write as its worker was killed), the parent removes it once the child's Ray is down.

The child runs in its own process group, so a signal meant for `enrich` (a terminal's Ctrl-C, a
scheduler's SIGTERM, a hang-up) reaches it once, from the parent: SIGINT, SIGTERM and SIGHUP are
all passed on as SIGINT, and the run stops as on Ctrl-C (the commits under way finish, exit 130).
Not as SIGTERM, because Ray's core worker prints a stack dump for that one. POSIX only: elsewhere
`enrich run` runs unsupervised, as before.

Library use (`enrich.cli.main`, `jobs/enrich_job.py`) runs in-process, unsupervised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from enrich import errors

CHILD_ENV = "ENRICH_SUPERVISOR_FD"  # set for the child: the pipe it reports on
_PR_SET_PDEATHSIG = 1
_report_fd: int | None = None  # in the child, once `child_started` has taken it from the environment


def wanted(argv: list[str]) -> bool:
    """Supervise `enrich run` on POSIX, unless this process is the supervised child already."""
    return argv[:1] == ["run"] and CHILD_ENV not in os.environ and os.name == "posix"


def run(argv: list[str]) -> int:
    """Run `python -m enrich ARGV` as a child and return its exit code, or EXIT_INFRASTRUCTURE
    with one line when it died under the run without choosing one."""
    read_end, write_end = os.pipe()
    env = {**os.environ, CHILD_ENV: f"{write_end},{os.getpid()}"}
    child = None

    def forward(signum, frame) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # installed first: no signal is lost while it starts
        signal.signal(getattr(signal, name), forward)
    child = subprocess.Popen([sys.executable, "-m", "enrich", *argv], env=env, pass_fds=(write_end,), process_group=0)
    os.close(write_end)
    reports: dict = {}
    reader = threading.Thread(target=_read_reports, args=(read_end, reports), daemon=True)
    reader.start()
    returncode = child.wait()
    reader.join(timeout=5)
    if "exit" in reports:
        _sweep(reports)
        return int(reports["exit"])
    if returncode == -signal.SIGINT:
        return errors.EXIT_INTERRUPTED
    if "started" not in reports:  # it never got going (a broken install): its own output says why
        return returncode if returncode > 0 else errors.EXIT_INFRASTRUCTURE
    print(f"enrich: error: {_died(returncode, reports)}", file=sys.stderr, flush=True)
    return errors.EXIT_INFRASTRUCTURE


def _read_reports(fd: int, reports: dict) -> None:
    with open(fd, encoding="utf-8") as pipe:
        for line in pipe:
            try:
                reports.update(json.loads(line))
            except ValueError:
                pass


def _died(returncode: int, reports: dict) -> str:
    """The one line for a driver that died under the run, after cleaning up what it left."""
    from enrich.lock import process_running

    raylet = reports.get("raylet_pid")
    if returncode < 0:  # its embedded Ray goes down with it
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
        if returncode == -signal.SIGKILL:
            how += " (out of memory?)"
    elif raylet and not process_running(int(raylet)):  # Ray's core worker ends the driver itself
        how = f"was ended by Ray (exit code {returncode}): the local Ray node (its raylet and object store) died"
        if reports.get("ray_logs"):
            how += f" (its logs: {reports['ray_logs']})"
    else:
        how = f"ended with exit code {returncode} without finishing"
    _wait_for_workers(raylet)
    left = _clean_up(reports)
    committed = int(reports.get("committed", 0))
    cause = f"{reports['outage']}; then " if reports.get("outage") else ""  # what the driver was handling
    return (
        f"{cause}the run's driver {how}; {_clips(committed)} committed by this run {'is' if committed == 1 else 'are'} "
        f"kept{left}; run the same command again to resume"
    )


RAY_GONE_TIMEOUT_S = 60  # how long the dead driver's embedded Ray gets to go down before cleaning up
WORKER_GRACE_S = 3.0  # Ray's workers notice that their raylet is gone within about a second


def _wait_for_workers(raylet: int | None) -> None:
    """Let the dead driver's Ray go down first: a write task still running would stage parts again
    after the staging was removed."""
    from enrich.lock import process_running

    deadline = time.monotonic() + RAY_GONE_TIMEOUT_S
    while raylet and process_running(int(raylet)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(WORKER_GRACE_S)


def _sweep(reports: dict) -> None:
    """Remove what a child that ended its run itself left in its staging, once its Ray is down.

    The run removes its staging as it ends, but a stage task that Ray Data cancels as the run stops
    can still write while its worker is being killed: a SIGTERM test once found such a part's
    temporary file, written after the run had removed its staging. Skipped after an outage (the
    storage is not answering), and free when nothing is there, as after almost every run."""
    from enrich import storage

    staging = reports.get("staging")
    if not staging or reports.get("outage"):
        return
    try:
        left = storage.list_uris(staging) if storage.is_s3(staging) else os.path.lexists(staging)
    except Exception:
        return
    if left:
        _wait_for_workers(reports.get("raylet_pid"))
        _clean_up({"staging": staging, "staging_root": reports["staging_root"]})


def _clips(n: int) -> str:
    return f"{n} clip{'' if n == 1 else 's'}"


def _clean_up(reports: dict) -> str:
    """Remove the dead child's staging and release its lock; what could not be, as a clause."""
    from enrich import lock, storage

    left = []
    if reports.get("staging"):
        try:
            storage.delete_prefix(reports["staging"])
            storage.remove_empty_folders(reports["staging_root"])
        except Exception:
            left.append(f"its staging {reports['staging']} is left for the next run to remove")
    if reports.get("lock_token"):
        try:
            if not lock.release_dead(reports["output"], reports["lock_token"]):
                left.append("its lock is taken over by the next run")
        except Exception:
            left.append("its lock is taken over by the next run")
    return "".join(f"; {item}" for item in left)


def child_started() -> None:
    """In the supervised child: take the report pipe (out of the environment, and out of reach of
    the processes Ray starts), treat SIGTERM and SIGHUP sent to it directly as Ctrl-C (until Ray
    installs its own SIGTERM handler, `sys.exit(SIGTERM)`, which `enrich.cli.entry` maps to 130),
    and die with the parent (a SIGKILL of `enrich` kills its driver too, as before there was a
    parent; Linux only)."""
    global _report_fd
    fd, _, parent = os.environ.pop(CHILD_ENV, "").partition(",")
    if not fd.isdigit():
        return
    _report_fd = int(fd)
    os.set_inheritable(_report_fd, False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.default_int_handler)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphaned child finishes its run
        pass
    if parent.isdigit() and os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(errors.EXIT_INFRASTRUCTURE)
    report(started=True)


def report(**record) -> None:
    """Tell the supervising parent something; a no-op when unsupervised."""
    if _report_fd is None:
        return
    try:
        os.write(_report_fd, (json.dumps(record) + "\n").encode())
    except OSError:  # the parent is gone
        pass
