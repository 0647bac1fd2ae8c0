"""The OUTPUT lock on the local filesystem (tests/e2e/test_s3.py covers it on S3)."""

import json
import os
import subprocess
import sys
import time

import pytest

from enrich import lock
from enrich.errors import UsageError


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path):
    first = lock.Lock(str(tmp_path)).acquire()
    with pytest.raises(UsageError, match="held by another run"):
        lock.Lock(str(tmp_path)).acquire()
    first.release()
    assert not (tmp_path / lock.NAME).exists()
    lock.Lock(str(tmp_path)).acquire().release()


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path):
    code = f"from enrich import lock; lock.Lock({str(tmp_path)!r}).acquire()"  # exits without releasing
    subprocess.run([sys.executable, "-c", code], check=True)
    left = json.loads((tmp_path / lock.NAME).read_text())
    taken = lock.Lock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / lock.NAME).read_text())["token"] == taken.token != left["token"]
    taken.release()


def test_a_fresh_lock_from_another_host_is_respected_and_a_stale_one_is_not(tmp_path, monkeypatch):
    record = {"token": "t", "host": "elsewhere", "pid": 1, "started_at": 0, "refreshed_at": 0}
    (tmp_path / lock.NAME).write_text(json.dumps(record))
    lock.Lock(str(tmp_path)).acquire().release()  # refreshed at 1970: stale
    import time

    (tmp_path / lock.NAME).write_text(json.dumps({**record, "refreshed_at": time.time()}))
    with pytest.raises(UsageError, match="pid 1 on elsewhere"):
        lock.Lock(str(tmp_path)).acquire()


def test_a_lock_left_by_a_killed_process_not_yet_reaped_is_taken_over(tmp_path):
    """A killed driver whose parent is gone can stay a zombie (a container without an init reaps
    nothing); os.kill(pid, 0) still finds it, but it holds nothing."""
    code = f"import os; from enrich import lock; lock.Lock({str(tmp_path)!r}).acquire(); os._exit(0)"
    holder = subprocess.Popen([sys.executable, "-c", code])  # not waited for (poll would reap it)
    deadline = time.monotonic() + 60
    while lock.process_running(holder.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / lock.NAME).exists()
    os.kill(holder.pid, 0)  # still there: a zombie
    assert not lock.process_running(holder.pid)
    lock.Lock(str(tmp_path)).acquire().release()
    holder.wait()


def test_release_dead_deletes_only_the_lock_taken_with_its_token(tmp_path):
    first = lock.Lock(str(tmp_path)).acquire()
    first._stop.set()  # as if its process had died: no more refreshes
    assert not lock.release_dead(str(tmp_path), "another-token")
    assert (tmp_path / lock.NAME).exists()
    assert lock.release_dead(str(tmp_path), first.token)
    assert not (tmp_path / lock.NAME).exists()
