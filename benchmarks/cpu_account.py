"""Where the CPU goes: CPU seconds of every process on the machine while a command runs (Linux).

    python benchmarks/cpu_account.py -- enrich run ../shared/fixtures/videos /tmp/out \\
        --depth-model random:depth-anything-v2-small --fps 2 --max-frames-per-clip 24 --quiet --force

Samples /proc every half second and charges each process the CPU time it used while the command
ran, grouped by what it is: Ray names its workers by the actor or task they run (`ray::Depth…`,
`ray::IDLE` for task workers between tasks), its node processes by their executable or script. A
process that exits loses at most its last half second. Run it on an otherwise idle machine: every
process is counted, the command's or not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections import Counter

TICKS = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (what it is, CPU seconds so far) for every process still readable."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (
            label(stat[stat.index("(") + 1 : stat.rindex(")")], argv),
            (int(fields[11]) + int(fields[12])) / TICKS,
        )
    return out


def label(comm: str, argv: list[str]) -> str:
    if not argv:
        return comm  # a kernel thread
    if argv[0].startswith("ray::"):
        return argv[0]
    if "-m" in argv[:-1]:
        return f"{os.path.basename(argv[0])} -m {argv[argv.index('-m') + 1]}"
    script = next((a for a in argv[1:] if not a.startswith("-")), None)  # an interpreter's script
    return f"{os.path.basename(argv[0])} {os.path.basename(script)}" if script else os.path.basename(argv[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    parser.add_argument("--min", type=float, default=0.3, help="list processes above this many CPU-s")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    before = {pid: cpu for pid, (_, cpu) in snapshot().items()}
    last: dict[int, tuple[str, float]] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        last.update(snapshot())
        time.sleep(0.5)
    wall = time.perf_counter() - started
    used = Counter()
    for pid, (what, cpu) in last.items():
        used[what] += cpu - before.get(pid, 0.0)
    total = sum(used.values())
    print(f"\n{wall:.1f} s wall, {total:.1f} CPU-s used of {wall * (os.cpu_count() or 1):.1f} ({os.cpu_count()} cores)")
    for what, cpu in used.most_common():
        if cpu >= args.min:
            print(f"{cpu:8.1f}  {what}")
    raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()
