"""One run at a time per OUTPUT: a lock object, OUTPUT/_lock.json, created only if absent.

A second run against the same OUTPUT refuses with one line naming the holder (exit 2), so two
scheduled runs can never interleave their commits. The holder refreshes the lock as it goes; a
lock left by a run that died is taken over: at once when it was on this host and its process is
gone, otherwise once it has not been refreshed for STALE_S seconds.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from enrich import storage
from enrich.errors import Busy
from enrich.manifest.layout import LOCK, lock_file

NAME = LOCK  # see `enrich.manifest.layout`
STALE_S = 15 * 60
REFRESH_S = 60


class Lock:
    def __init__(self, output: str):
        self.uri = lock_file(output)
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self.held = False
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # a refresh never lands after the release

    def _record(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started,
                "refreshed_at": time.time(),
            }  # fmt: skip
        ).encode()

    def acquire(self) -> Lock:
        for _ in range(2):
            if storage.create_exclusive(self.uri, self._record()):
                self.held = True
                threading.Thread(target=self._heartbeat, name="enrich-lock", daemon=True).start()
                return self
            holder = self._holder()
            if holder is None or not _stale(holder):
                break
            storage.delete(self.uri)  # its run died: take over (once)
        holder = self._holder() or {}
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started_at", 0)))
        raise Busy(
            f"{self.uri} is held by another run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
            f"{since}); wait for it to finish, or delete the lock if that run is gone"
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(REFRESH_S):
            with self._mutex:
                if not self.held:
                    return
                try:
                    storage.write_bytes(self.uri, self._record())
                except Exception:  # a missed refresh is retried; only STALE_S of them would matter
                    pass

    def release(self) -> None:
        """Delete the lock if storage lets us. If it does not (an outage), the lock stays and is
        taken over as any dead run's is: at once on this host, else once it is STALE_S old."""
        with self._mutex:
            if self.held:
                self.held = False
                self._stop.set()
                try:
                    storage.delete(self.uri)
                except Exception:
                    pass

    def _holder(self) -> dict | None:
        try:
            return json.loads(storage.read_bytes(self.uri))
        except Exception:  # vanished meanwhile, or unreadable: treat as not held
            return None


def release_dead(output: str, token: str) -> bool:
    """Delete OUTPUT's lock if it is still the one taken with `token`, by a run that has died (the
    supervising `enrich` process cleans up after its driver). False when another run holds it."""
    lock = Lock(output)
    holder = lock._holder()
    if holder is None:
        return True
    if holder.get("token") != token:
        return False
    storage.delete(lock.uri)
    return True


def _stale(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not process_running(holder["pid"])
    return time.time() - float(holder.get("refreshed_at", 0)) > STALE_S


def process_running(pid: int) -> bool:
    """Whether `pid` is a live process: a zombie (dead, not yet reaped, as a killed driver whose
    parent is gone can stay in a container without an init) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:  # no /proc (not Linux), or gone meanwhile
        return True
