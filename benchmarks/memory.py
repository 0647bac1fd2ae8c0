"""Memory: the peak memory of `enrich run` on long, high-resolution clips (Linux).

    python benchmarks/memory.py                              # 4K x 30, 4K x 300, 1080p x 1,000 frames, depth
    python benchmarks/memory.py --only 4k30,4k300
    python benchmarks/memory.py -- --stages depth,flow --flow-model random:raft_small
    python benchmarks/memory.py --scale 0.05                 # a quick check of this script, not a measurement

Runs the real CLI, as a user would, on one clip at a time, every frame of it (pass `-- --fps N` to
sample): `enrich run CLIP OUT --depth-model MODEL --quiet --force`, plus whatever follows `--`,
each into a fresh OUTPUT folder that is removed afterwards (`--keep-output` keeps them). The depth
model is a tiny Depth Anything V2 with random weights (the real classes, as tests/helpers.py builds
it), so the memory measured is the pipeline's, not the model's: frames, depth maps at the clip's
resolution, PNGs, blocks in the object store. `--depth-model SPEC` uses another one.

The clips are the fixture tokyo_walk.mp4 (1280x720, 15 fps, 195 frames) upscaled with PIL and looped
as needed, H.264 (libx264 veryfast, crf 23, a keyframe every 30 frames, yuv420p, 15 fps), so
decoding and PNG sizes are those of real footage (about 3, 30 and 32 MB). They are written once
into --clips-dir (default /tmp/enrich-memory-clips) and reused: generating all three took 5.4
CPU-minutes, 9 minutes on a busy 2-core machine. On 2 idle cores the three commands then take 17
minutes in all (60, 471 and 469 s, measured on 2026-12-01).

While each command runs, every 0.25 s, it samples the machine's memory in use (MemTotal -
MemAvailable from /proc/meminfo), /dev/shm's usage (the Ray object store) and, for every process
of the command's tree (the CLI, Ray's node processes and its workers), its RSS (/proc/PID/statm)
and USS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, read again whenever the RSS moved
by 8 MiB and at least every 2 s: that read walks the page tables). Before each command it takes
the idle memory in use, the median of 2 s of samples. Per clip it prints the wall time, the exit
code, the peak memory in use above idle, the peak of the command's processes' summed USS, the
largest process's peak USS and what it was (`ray::MapWorker(...)`, `raylet`, `python3 enrich`...),
/dev/shm's peak above idle, its largest processes, and the sampler's own CPU time.

Targets: the 300-frame 4K clip's peak (memory in use above idle) within 1.25 x the 30-frame 4K
clip's, i.e. memory does not grow with clip length; every clip's peak under 6 GiB. It prints
"met" or "not met" for each and exits 0 either way; non-zero only if a command failed.

Run it on an otherwise idle machine: machine-wide memory counts everything, the command's or not
(the process columns count only the command's). `--scale S` makes each clip S x the frames and
sqrt(S) x each side, only so that this script itself can be checked in seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "fixtures" / "videos" / "tokyo_walk.mp4"
GIB = 1024**3
# A keyframe every 2 s, as phones and action cameras write them (x264's default is up to 250
# frames): the decoder holds the frames of one keyframe interval (README: Benchmark, memory).
KEYINT = 30
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23", "g": str(KEYINT)}
INTERVAL = 0.25  # seconds between samples
IDLE_SECONDS = 2.0
CLIPS = {  # name -> (width, height, frames)
    "4k30": (3840, 2160, 30),
    "4k300": (3840, 2160, 300),
    "1080p1000": (1920, 1080, 1000),
}
RATIO_TARGET = 1.25  # 4k300 peak / 4k30 peak
PEAK_TARGET_GIB = 6.0


# --- clips -----------------------------------------------------------------------------------------


def clip_size(name: str, scale: float) -> tuple[int, int, int]:
    width, height, frames = CLIPS[name]
    side = math.sqrt(scale)
    return _even(width * side), _even(height * side), max(2, round(frames * scale))


def _even(pixels: float) -> int:
    return max(16, 2 * round(pixels / 2))  # yuv420p needs even sides


def source_frames(path: Path):
    """The source clip's frames as PIL images, looped forever; one frame in memory at a time."""
    import av

    while True:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_image()


def generate(path: Path, width: int, height: int, frames: int, source: Path = SOURCE) -> None:
    """Upscale `source` with PIL to width x height and encode `frames` of it with libx264, streaming:
    a thread decodes and resizes (PIL's resize releases the GIL) a few frames ahead of the encoder."""
    import av
    from PIL import Image

    with av.open(str(source)) as probe:
        rate = probe.streams.video[0].guessed_rate or 15
    ready: queue.Queue = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def produce() -> None:
        images = source_frames(source)
        try:
            for _, image in zip(range(frames), images, strict=False):
                ready.put(av.VideoFrame.from_image(image.resize((width, height), Image.Resampling.BILINEAR)))
        except BaseException as exc:  # noqa: B036 (handed to the encoder's thread)
            failed.append(exc)
        finally:
            images.close()
            ready.put(None)

    partial = path.with_name(path.name + ".partial")
    threading.Thread(target=produce, daemon=True).start()
    with av.open(str(partial), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate, options=ENCODER_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        while (frame := ready.get()) is not None:
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if failed:
        partial.unlink()
        raise failed[0]
    partial.rename(path)  # only a complete clip is ever reused


def ensure_clips(folder: Path, names: list[str], scale: float) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        width, height, frames = clip_size(name, scale)
        path = folder / f"{SOURCE.stem}_{width}x{height}_{frames}f_g{KEYINT}.mp4"
        if not path.exists():
            started = time.perf_counter()
            generate(path, width, height, frames)
            seconds = time.perf_counter() - started
            print(
                f"generated {path} ({width}x{height}, {frames} frames, {path.stat().st_size / 1e6:.1f} MB) "
                f"in {seconds:.1f}s ({frames / seconds:.1f} frames/s)",
                flush=True,
            )
        paths[name] = path
    return paths


def tiny_depth_model(folder: Path) -> str:
    """tests.helpers.save_tiny_depth_anything, in a child process so that this one, which samples
    while the commands run, never imports torch."""
    code = "import sys; from pathlib import Path; from tests.helpers import save_tiny_depth_anything as s; "
    code += "s(Path(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the tiny depth model failed: {proc.stderr.strip()[-2000:]}")
    return str(folder)


# --- sampling --------------------------------------------------------------------------------------


def memory_in_use() -> int:
    """MemTotal - MemAvailable, in bytes."""
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable"):
                values[key] = int(rest.split()[0]) * 1024
                if len(values) == 2:
                    break
    return values["MemTotal"] - values["MemAvailable"]


def shm_used() -> int:
    return shutil.disk_usage("/dev/shm").used


def parents() -> dict[int, int]:
    """pid -> parent pid of every process still readable."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rindex(")") + 2 :].split(maxsplit=2)[1])
    return out


def uss_rss(pid: int) -> tuple[int, int] | None:
    """(USS, RSS) in bytes from /proc/PID/smaps_rollup, or None when it is gone or unreadable."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Private_Clean", "Private_Dirty"):
                    fields[key] = int(rest.split()[0]) * 1024
    except OSError:
        return None
    if "Rss" not in fields:
        return None  # a kernel thread or a zombie
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), fields["Rss"]


PAGE = os.sysconf("SC_PAGE_SIZE")
USS_EVERY = 2.0  # seconds: smaps_rollup is read at least this often per process...
USS_MOVE = 8 * 1024**2  # ...and whenever its RSS moved this much since it was last read


def rss(pid: int) -> int | None:
    """RSS in bytes from /proc/PID/statm: a counter, far cheaper than smaps_rollup's page walk."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def label(pid: int) -> str:
    """What the process is: Ray names its workers by what they run, the rest by executable/script."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].strip()[:60]
    if "-m" in argv[:-1]:
        return f"{os.path.basename(argv[0])} -m {argv[argv.index('-m') + 1]}"
    script = next((a for a in argv[1:] if not a.startswith("-")), None)  # an interpreter's script
    return f"{os.path.basename(argv[0])} {os.path.basename(script)}" if script else os.path.basename(argv[0])


@dataclass
class Peak:
    uss: int = 0
    rss: int = 0
    what: str = "?"  # at the peak: a Ray worker changes its name as it takes on an actor or task
    uss_now: int = 0  # as last read
    rss_read: int = -USS_MOVE  # RSS when smaps_rollup was last read
    read_at: float = -USS_EVERY


@dataclass
class Run:
    name: str
    width: int
    height: int
    frames: int
    seconds: float = 0.0
    returncode: int = 0
    idle: int = 0
    peak: int = 0  # machine-wide memory in use
    peak_at: float = 0.0  # seconds after the start
    idle_shm: int = 0
    peak_shm: int = 0
    peak_tree_uss: int = 0  # the command's processes, summed, at one sample
    processes: dict[int, Peak] = field(default_factory=dict)
    samples: int = 0
    smaps_reads: int = 0
    sampler_cpu: float = 0.0
    summary: str = ""
    stderr: str = ""
    other_ray: int = 0  # Ray processes already running before the command

    @property
    def above_idle(self) -> int:
        return self.peak - self.idle

    def largest(self) -> Peak:
        return max(self.processes.values(), key=lambda p: p.uss, default=Peak())


def idle_memory(seconds: float) -> tuple[int, int]:
    """The medians of memory in use and of /dev/shm's usage over `seconds` of samples."""
    used, shm = [], []
    for _ in range(max(1, round(seconds / INTERVAL))):
        used.append(memory_in_use())
        shm.append(shm_used())
        time.sleep(INTERVAL)
    return int(statistics.median(used)), int(statistics.median(shm))


def ray_processes() -> list[str]:
    """What each Ray process on the machine is (before a command: another Ray, not the command's)."""
    found = []
    for pid in parents():
        what = label(pid)
        if what.startswith("ray::") or what in ("raylet", "gcs_server"):
            found.append(what)
    return found


def measure(run: Run, command: list[str], workdir: Path) -> None:
    """Run `command`, sampling until it exits."""
    time.sleep(1.0)  # let the previous command's processes go before idle is taken
    run.idle, run.idle_shm = idle_memory(IDLE_SECONDS)
    run.other_ray = len(ray_processes())
    run.peak, run.peak_shm = run.idle, run.idle_shm
    ours: set[int] = set()
    with open(workdir / "stdout.txt", "w") as out, open(workdir / "stderr.txt", "w") as err:
        cpu_before = time.process_time()
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        ours.add(proc.pid)
        while True:
            tick = time.perf_counter()
            done = proc.poll() is not None
            used = memory_in_use()
            if used > run.peak:
                run.peak, run.peak_at = used, tick - started
            run.peak_shm = max(run.peak_shm, shm_used())
            tree = parents()
            grew = True
            while grew:  # the command's descendants; once seen, always counted (workers outlive parents)
                new = {pid for pid, parent in tree.items() if parent in ours and pid not in ours}
                ours |= new
                grew = bool(new)
            total = 0
            for pid in ours & tree.keys():
                resident = rss(pid)
                if resident is None:
                    continue
                peak = run.processes.setdefault(pid, Peak())
                peak.rss = max(peak.rss, resident)
                # USS moves with RSS (private pages are resident ones): between reads it is within
                # USS_MOVE of the last one, and a process whose RSS stays put costs a read per USS_EVERY
                if abs(resident - peak.rss_read) >= USS_MOVE or tick - peak.read_at >= USS_EVERY:
                    sizes = uss_rss(pid)
                    run.smaps_reads += 1
                    if sizes is None:
                        continue
                    peak.uss_now, peak.rss_read, peak.read_at = sizes[0], sizes[1], tick
                    peak.rss = max(peak.rss, sizes[1])
                    if sizes[0] > peak.uss:
                        peak.uss, peak.what = sizes[0], label(pid)
                total += peak.uss_now
            run.peak_tree_uss = max(run.peak_tree_uss, total)
            run.samples += 1
            if done:
                break
            time.sleep(max(0.0, INTERVAL - (time.perf_counter() - tick)))
        run.seconds = time.perf_counter() - started
        run.sampler_cpu = time.process_time() - cpu_before
        run.returncode = proc.returncode
    lines = (workdir / "stdout.txt").read_text().strip().splitlines()
    run.summary = lines[0] if lines else ""
    run.stderr = (workdir / "stderr.txt").read_text().strip()[-2000:]


# --- report ----------------------------------------------------------------------------------------


def gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def report(runs: list[Run]) -> None:
    print()
    print(
        f"{'clip':<10} {'size':>9} {'frames':>6} {'wall s':>7} {'rc':>3} {'peak GiB':>8} "
        f"{'procs USS':>9} {'shm GiB':>7}  largest process: peak USS GiB, what"
    )
    for run in runs:
        big = run.largest()
        print(
            f"{run.name:<10} {run.width}x{run.height:<4} {run.frames:>6} {run.seconds:>7.1f} {run.returncode:>3} "
            f"{gib(run.above_idle):>8} {gib(run.peak_tree_uss):>9} {gib(run.peak_shm - run.idle_shm):>7}  "
            f"{gib(big.uss)} {big.what}"
        )
    print()
    print("peak GiB: memory in use (MemTotal - MemAvailable) above idle; procs USS: the command's processes,")
    print("summed at one sample; shm: /dev/shm (the object store) above idle")
    for run in runs:
        print()
        print(
            f"{run.name}: idle {gib(run.idle)} GiB in use, peak at {run.peak_at:.0f}s of {run.seconds:.0f}s; "
            f"{len(run.processes)} processes; sampler: {run.samples} samples, {run.smaps_reads} smaps_rollup reads, "
            f"{1000 * run.sampler_cpu / max(1, run.samples):.1f} ms CPU each "
            f"({100 * run.sampler_cpu / max(run.seconds, 1e-9):.1f}% of a core)"
        )
        if run.summary:
            print(f"  enrich: {run.summary}")
        if run.other_ray:
            print(f"  {run.other_ray} Ray processes were already running before it (not counted in procs USS)")
        if run.returncode != 0:
            print(f"  FAILED ({run.returncode}): {run.stderr}")
        top = sorted(run.processes.values(), key=lambda p: p.uss, reverse=True)[:6]
        for peak in top:
            print(f"  {gib(peak.uss):>6} USS {gib(peak.rss):>6} RSS  {peak.what}")
    by_name = {run.name: run for run in runs if run.returncode == 0}
    print()
    idles = [run.idle for run in runs]
    if max(idles) - min(idles) > GIB / 2:
        print(
            f"the machine was not idle: idle memory in use went from {gib(min(idles))} to {gib(max(idles))} GiB "
            "between commands, so the peaks above idle include other work; procs USS counts only the command's"
        )
    if "4k30" in by_name and "4k300" in by_name:
        long, short = by_name["4k300"], by_name["4k30"]
        ratio = long.above_idle / max(short.above_idle, 1)
        verdict = "met" if ratio <= RATIO_TARGET else "not met"
        print(
            f"4k300 peak / 4k30 peak: {ratio:.2f}  (target <= {RATIO_TARGET}: {verdict}); "
            f"procs USS: {long.peak_tree_uss / max(short.peak_tree_uss, 1):.2f}"
        )
    else:
        print(f"4k300 peak / 4k30 peak: n/a (needs both to succeed; target <= {RATIO_TARGET})")
    if by_name:
        worst = max(by_name.values(), key=lambda r: r.above_idle)
        verdict = "met" if worst.above_idle < PEAK_TARGET_GIB * GIB else "not met"
        print(
            f"every peak under {PEAK_TARGET_GIB:g} GiB: {verdict}  (highest {gib(worst.above_idle)} GiB, {worst.name})"
        )
    else:
        print(f"every peak under {PEAK_TARGET_GIB:g} GiB: n/a (no command succeeded)")


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [-- ENRICH_RUN_ARGS ...]",
    )
    parser.add_argument("--only", default=",".join(CLIPS), help=f"comma-separated subset of {','.join(CLIPS)}")
    parser.add_argument("--clips-dir", type=Path, default=Path("/tmp/enrich-memory-clips"))
    parser.add_argument("--depth-model", help="passed to enrich (default: a tiny random Depth Anything)")
    parser.add_argument("--keep-output", action="store_true", help="keep each run's OUTPUT folder and logs")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="S x the frames, sqrt(S) x each side: to check this script quickly"
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in CLIPS]
    if unknown or not names:
        parser.error(f"--only: unknown clip(s) {','.join(unknown)} (known: {','.join(CLIPS)})")
    if not (0 < args.scale <= 1):
        parser.error("--scale must be in (0, 1]")

    started = time.perf_counter()
    clips = ensure_clips(args.clips_dir, names, args.scale)
    print(f"clips ready in {time.perf_counter() - started:.1f}s ({args.clips_dir})", flush=True)
    enrich = Path(sys.executable).with_name("enrich")
    cli = [str(enrich)] if enrich.exists() else [sys.executable, "-m", "enrich"]

    runs = []
    with tempfile.TemporaryDirectory(prefix="enrich-memory-model-") as model_folder:
        model = args.depth_model or tiny_depth_model(Path(model_folder))
        shown = args.depth_model or "tiny random Depth Anything (tests/helpers.py)"
        print(f"depth model: {shown}; extra args: {' '.join(extra) or '(none)'}; {os.cpu_count()} cores")
        for name in names:
            width, height, frames = clip_size(name, args.scale)
            run = Run(name, width, height, frames)
            workdir = Path(tempfile.mkdtemp(prefix=f"enrich-memory-{name}-"))
            command = [*cli, "run", str(clips[name]), str(workdir / "out"), "--depth-model", model]
            command += ["--quiet", "--force", *extra]
            print(f"{name}: {' '.join(command)}", flush=True)
            try:
                measure(run, command, workdir)
            finally:
                if args.keep_output:
                    print(f"  kept {workdir}")
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
            print(f"  {run.seconds:.1f}s, rc {run.returncode}, peak {gib(run.above_idle)} GiB above idle", flush=True)
            runs.append(run)
    report(runs)
    raise SystemExit(1 if any(run.returncode != 0 for run in runs) else 0)


if __name__ == "__main__":
    main()
