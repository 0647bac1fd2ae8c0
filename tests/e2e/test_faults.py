"""Faults under a run, and runs that stop before any work: what OUTPUT looks like afterwards.

The real `enrich run` in subprocesses, as a user or a scheduler runs it: a driver killed with
SIGKILL mid-run and the same command run again; the S3 endpoint going away mid-run; runs that fail
before any work, which must leave OUTPUT as they found it (and not create it).

Each run gets its own session (start_new_session), so whatever Ray processes a killed driver
leaves behind can be found by their session id and killed afterwards, without touching the test
session's own Ray or anyone else's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from enrich import errors
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET

pytestmark = pytest.mark.slow

# Storage (or the Ray cluster) failed under the run: what was committed is kept, the same command
# resumes. 3 is the documented code; enrich.errors names it EXIT_INFRASTRUCTURE.
EXIT_INFRASTRUCTURE = getattr(errors, "EXIT_INFRASTRUCTURE", 3)

# A small clip first (committed early), then enough frames after it that a kill lands mid-run.
CLIPS = {
    "a_tiny.mp4": "tiny_2fps.mp4",
    "b_portrait.mp4": "portrait_with_audio.mp4",
    "c_sintel.mp4": "sintel_scene_cuts_10s.mp4",
    "d_coaster.mp4": "davis_rollercoaster.mp4",
}
# Upper bounds that only turn a hang into a failure; a run takes well under a minute on 2 idle cores.
FIRST_COMMIT_TIMEOUT_S = 240
RUN_TIMEOUT_S = 300
ORPHAN_GRACE_S = 5  # what the killed driver's Ray gets before the same command is run again
ENDPOINT_LOST_LIMIT_S = 120  # the run must end this soon after its S3 endpoint goes away


def options(model: Path) -> list[str]:
    return ["--depth-model", str(model), "--fps", "2"]


def run_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", **extra}
    env.pop("RAY_ADDRESS", None)  # each run starts its own local Ray, as a user's would
    return env


class Enrich:
    """`python -m enrich run ARGS` in a new session, its output in files (a pipe could fill)."""

    def __init__(self, args: list, logs: Path, env: dict[str, str] | None = None):
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout.txt", logs / "stderr.txt"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "enrich", "run", *map(str, args)],
                stdout=out,
                stderr=err,
                env=env or run_env(),
                start_new_session=True,
            )
        self.pid = self.proc.pid  # also the id of its session

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the driver if it still runs, then every process left in its session."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        kill_session(self.pid)


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is `sid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL what is left in the session a run started (its orphaned Ray processes)."""
    assert sid > 1 and sid != os.getsid(0), "refusing to kill the test's own session"
    for _ in range(10):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def tail(text: str, n: int = 30) -> str:
    return "\n".join(text.splitlines()[-n:])


def wait_until(condition, run: Enrich, timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail if the run ends first or it takes too long."""
    deadline = time.monotonic() + timeout
    while not condition():
        if run.proc.poll() is not None:
            pytest.fail(f"the run exited ({run.proc.returncode}) before {what}:\n{tail(run.stderr())}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout}s:\n{tail(run.stderr())}")
        time.sleep(0.1)


def running_after_first_commit(args: list, logs: Path, out: Path) -> Enrich:
    """A run, once it has published its first clip and is still going (stopped if it fails to)."""
    run = Enrich(args, logs)
    try:
        wait_until(lambda: committed_files(out), run, FIRST_COMMIT_TIMEOUT_S, "clip was committed")
        assert run.proc.poll() is None, "the run finished before it could be disturbed"
    except BaseException:
        run.stop()
        raise
    return run


def committed_files(out: Path) -> list[Path]:
    """The published per-clip frames files: those of the frames version that the clips table's
    latest version names, which readers see."""
    from enrich.manifest import delta

    if not delta.is_table(str(out), "clips"):
        return []
    _, versions = delta.snapshot(str(out))
    frames = delta.open_table(str(out), "frames", versions.others.get("frames"))
    return sorted(Path(uri) for uri in frames.file_uris()) if frames is not None else []


def frame_indices(out: Path) -> dict[str, list[int]]:
    """clip_id -> its frame indices over every published frames file (a duplicate shows twice)."""
    found: dict[str, list[int]] = {}
    for path in committed_files(out):
        table = pq.read_table(path, columns=["clip_id", "frame_index"]).to_pydict()
        for clip_id, index in zip(table["clip_id"], table["frame_index"], strict=True):
            found.setdefault(clip_id, []).append(index)
    return {clip_id: sorted(indices) for clip_id, indices in found.items()}


def clips_rows(out: Path) -> list[dict]:
    from enrich.manifest.commit import read_clips

    return read_clips(str(out)).to_pylist()


def leftovers(out: Path) -> list[str]:
    """What a finished run must not leave in OUTPUT: staging (even an empty folder), its lock,
    temporary files of atomic writes, write probes."""
    found = []
    if (out / "_staging").exists():
        found.append("_staging/")
        found += [str(p.relative_to(out)) for p in sorted((out / "_staging").rglob("*"))]
    if (out / "_lock.json").exists():
        found.append("_lock.json")
    for pattern in (".tmp-*", "_probe-*"):
        found += [str(p.relative_to(out)) for p in sorted(out.rglob(pattern))]
    return found


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder`: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, fixtures_dir) -> Path:
    folder = tmp_path_factory.mktemp("fault-clips")
    for name, source in CLIPS.items():
        shutil.copy(fixtures_dir / source, folder / name)
    return folder


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, clip_folder, tiny_depth_model) -> tuple[Path, int | None, str]:
    """The command of the crash test run once, undisturbed, into its own OUTPUT: the reference.
    Returns (OUTPUT, exit code or None if it hung, stderr)."""
    root = tmp_path_factory.mktemp("clean-run")
    run = Enrich([clip_folder, root / "out", *options(tiny_depth_model)], root / "logs")
    try:
        code = run.wait(RUN_TIMEOUT_S)
    finally:
        run.stop()
    return root / "out", code, run.stderr()


def test_a_successful_run_leaves_no_staging_and_no_lock(clean_run):
    out, code, stderr = clean_run
    assert code == errors.EXIT_OK, tail(stderr)
    assert {r["clip_id"]: r["status"] for r in clips_rows(out)} == {clip: "ok" for clip in CLIPS}
    assert leftovers(out) == []


def test_a_killed_driver_then_the_same_command_gives_an_exact_manifest(
    clean_run, clip_folder, tiny_depth_model, tmp_path
):
    ref_out, ref_code, ref_stderr = clean_run
    assert ref_code == errors.EXIT_OK, tail(ref_stderr)
    expected = frame_indices(ref_out)
    assert sorted(expected) == sorted(CLIPS) and all(expected.values())

    out = tmp_path / "out"
    args = [clip_folder, out, *options(tiny_depth_model)]
    first = running_after_first_commit(args, tmp_path / "killed", out)
    try:
        os.kill(first.pid, signal.SIGKILL)  # the driver only: its Ray is orphaned, as in real life
        first.proc.wait(timeout=30)  # reaped: a zombie would still look alive to the lock's pid check
        at_kill = committed_files(out)
        assert len(at_kill) < len(CLIPS), "every clip was committed before the kill: the input is too small"
        assert (out / "_lock.json").exists()  # the dead run's lock: the next run must take it over
        time.sleep(ORPHAN_GRACE_S)

        second = Enrich(args, tmp_path / "rerun")
        try:
            code = second.wait(RUN_TIMEOUT_S)
        finally:
            second.stop()
        stderr = second.stderr()
        assert code == errors.EXIT_OK, f"rerun after {len(at_kill)} of {len(CLIPS)} clips committed:\n{tail(stderr)}"
    finally:
        first.stop()

    rows = clips_rows(out)
    assert sorted(r["clip_id"] for r in rows) == sorted(CLIPS)  # exactly one row per clip
    assert {r["clip_id"]: r["status"] for r in rows} == {clip: "ok" for clip in CLIPS}
    assert {r["clip_id"]: r["n_frames"] for r in rows} == {clip: len(idx) for clip, idx in expected.items()}
    assert len(committed_files(out)) == len(CLIPS)  # one file per clip
    got = frame_indices(out)
    for clip_id, indices in got.items():
        assert len(indices) == len(set(indices)), f"duplicate frames in {clip_id}: {indices}"
    assert got == expected
    assert leftovers(out) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    """A moto S3 server of this test's own (the session's stays up)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                server.wait()
                pytest.fail("moto S3 server did not start")
            time.sleep(0.2)


def test_the_s3_endpoint_lost_mid_run_ends_the_run_with_one_line_and_exit_3(clip_folder, tiny_depth_model, tmp_path):
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_moto(port)
    run = None
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="bucket")
        for name in CLIPS:
            s3.upload_file(str(clip_folder / name), "bucket", f"clips/{name}")
        env = run_env(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
            AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
        )
        env.pop("AWS_PROFILE", None)
        run = Enrich(["s3://bucket/clips", "s3://bucket/out", *options(tiny_depth_model)], tmp_path / "logs", env)

        def committed() -> int:
            return s3.list_objects_v2(Bucket="bucket", Prefix="out/frames/").get("KeyCount", 0)

        wait_until(lambda: committed() > 0, run, FIRST_COMMIT_TIMEOUT_S, "clip was committed")
        assert committed() < len(CLIPS), "every clip was committed before the endpoint went away"
        server.kill()
        server.wait(timeout=30)
        lost = time.monotonic()
        code = run.wait(ENDPOINT_LOST_LIMIT_S + 5)
        seconds = time.monotonic() - lost
        stderr = run.stderr()
        assert code is not None and seconds < ENDPOINT_LOST_LIMIT_S, (
            f"still running {seconds:.0f}s after the endpoint went away:\n{tail(stderr)}"
        )
        assert code == EXIT_INFRASTRUCTURE, f"exit {code}:\n{tail(stderr)}"
        assert "Traceback" not in stderr, tail(stderr, 60)
        lines = [line for line in stderr.splitlines() if line.startswith("enrich: error:")]
        assert len(lines) == 1, tail(stderr)
        assert url in lines[0], tail(stderr, 60)  # names the endpoint
        assert "committed" in lines[0], lines[0]  # how many clips were kept
        assert "same command" in lines[0], lines[0]  # and how to resume
    finally:
        if run is not None:
            run.stop()
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def fails_before_work(case: str, tmp_path: Path, fixtures_dir: Path, model: Path) -> tuple[list, list, str]:
    """The arguments before OUTPUT, the options after it, and the message of a run that cannot start."""
    if case == "missing input":
        return [Path("/nonexistent/input")], ["--depth-model", model], "input does not exist"
    if case == "no videos":
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "notes.txt").write_text("not a clip\n")
        return [empty], ["--depth-model", model], "no video files under"
    assert case == "missing model"
    return [fixtures_dir / "tiny_2fps.mp4"], ["--depth-model", "/nonexistent/model"], "model folder not found"


CASES = ["missing input", "no videos", "missing model"]


def enrich_now(*args) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "enrich", "run", *map(str, args)],
        capture_output=True,
        text=True,
        env=run_env(),
        timeout=120,
        start_new_session=True,
    )
    return proc.returncode, proc.stderr


def assert_cannot_run(code: int, stderr: str, expected: str) -> None:
    assert code == errors.EXIT_CANNOT_RUN, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("enrich: error")]
    assert len(lines) == 1 and expected in lines[0], stderr


@pytest.mark.parametrize("case", CASES)
def test_a_run_that_cannot_start_does_not_create_output(case, tmp_path, fixtures_dir, tiny_depth_model):
    before, after, expected = fails_before_work(case, tmp_path, fixtures_dir, tiny_depth_model)
    out = tmp_path / "a" / "b" / "out"
    code, stderr = enrich_now(*before, out, *after)
    assert_cannot_run(code, stderr, expected)
    assert not out.exists(), snapshot(tmp_path / "a")
    assert not (tmp_path / "a").exists(), f"left behind: {sorted(snapshot(tmp_path / 'a'))}"


@pytest.mark.parametrize("case", CASES)
def test_a_run_that_cannot_start_leaves_an_existing_output_as_found(case, tmp_path, fixtures_dir, tiny_depth_model):
    before, after, expected = fails_before_work(case, tmp_path, fixtures_dir, tiny_depth_model)
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "notes.txt").write_bytes(b"the user's own file\n")
    (out / "keep" / "data.bin").write_bytes(bytes(range(256)))
    found = snapshot(out)
    code, stderr = enrich_now(*before, out, *after)
    assert_cannot_run(code, stderr, expected)
    assert not (out / "_lock.json").exists() and not (out / "_staging").exists()
    assert not list(out.glob("_probe-*"))
    assert snapshot(out) == found


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def raylet_of(sid: int) -> int | None:
    """The raylet the run's embedded Ray started (in the run's session)."""
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == b"raylet":
            return pid
    return None


def driver_of(run: Enrich) -> int | None:
    """The driver: the `enrich` command's one child process."""
    found = children(run.pid)
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("victim", ["driver", "raylet"])
def test_a_driver_or_ray_node_that_dies_under_the_run_ends_it_with_one_line_and_exit_3(
    victim, clip_folder, tiny_depth_model, tmp_path
):
    """The driver killed as the OOM killer would (SIGKILL, the `enrich` command itself survives),
    or the local Ray node (raylet and its object store) killed under the driver: one line, exit 3,
    the committed clips kept, no staging and no lock left behind."""
    out = tmp_path / "out"
    run = running_after_first_commit([clip_folder, out, *options(tiny_depth_model)], tmp_path / "logs", out)
    try:
        pid = driver_of(run) if victim == "driver" else raylet_of(run.pid)
        assert pid, f"no {victim} process found"
        os.kill(pid, signal.SIGKILL)
        code = run.wait(RUN_TIMEOUT_S)
        stderr = run.stderr()
        assert code == EXIT_INFRASTRUCTURE, f"exit {code}:\n{tail(stderr)}"
        assert "Traceback" not in stderr, tail(stderr, 60)
        lines = [line for line in stderr.splitlines() if line.startswith("enrich: error:")]
        assert len(lines) == 1, tail(stderr)
        assert ("Ray node" in lines[0]) == (victim == "raylet"), lines[0]
        assert "committed" in lines[0] and "same command" in lines[0], lines[0]
        assert len(committed_files(out)) < len(CLIPS), "every clip was committed before the kill"
        assert leftovers(out) == []
    finally:
        run.stop()


def test_sigterm_stops_the_run_as_ctrl_c_does(clip_folder, tiny_depth_model, tmp_path):
    """A scheduler's or Kubernetes' SIGTERM to the `enrich` command: the commits under way finish and
    are recorded, nothing is left behind, one line, exit 130; the same command does the rest."""
    out = tmp_path / "out"
    args = [clip_folder, out, *options(tiny_depth_model)]
    run = running_after_first_commit(args, tmp_path / "logs", out)
    try:
        run.proc.send_signal(signal.SIGTERM)
        code = run.wait(RUN_TIMEOUT_S)
        stderr = run.stderr()
        assert code == errors.EXIT_INTERRUPTED, f"exit {code}:\n{tail(stderr)}"
        assert "Traceback" not in stderr, tail(stderr, 60)
        assert [line for line in stderr.splitlines() if "SIGTERM" in line or line.startswith("enrich:")] == [
            "enrich: interrupted; finished clips are committed, run again to do the rest"
        ], tail(stderr)
        assert leftovers(out) == []
        recorded = {r["clip_id"] for r in clips_rows(out)}
        assert recorded and set(frame_indices(out)) <= recorded  # every published clip is in the clips table
    finally:
        run.stop()
