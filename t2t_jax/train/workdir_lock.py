"""One training run per workdir: `workdir/train.lock`, on a local disk or an object store.

The lock is created exclusively (a local hard link of a written file; on gs:// an upload with the precondition
"no such object yet", ifGenerationMatch=0), so of two processes starting together exactly one gets it. It names
its holder (host, pid, start) and carries a heartbeat that the holder refreshes every 30 seconds. A second
`t2t-jax train` on the same workdir stops with one line naming the holder. A lock whose holder is gone (its
process no longer exists on this host, or its heartbeat is older than `stale_after_s`) is taken over, with a
warning. Released (deleted) when training ends, however it ends; a killed run leaves a stale lock behind.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from t2t_jax import storage
from t2t_jax.errors import UserError

log = logging.getLogger(__name__)
LOCK_FILE = "train.lock"
HEARTBEAT_S = 30.0
# a preempted pod restarted on other VMs waits this long for the old lock; T2T_LOCK_STALE_AFTER_S changes it
STALE_AFTER_S = float(os.environ.get("T2T_LOCK_STALE_AFTER_S", 5 * 60))


class WorkdirLock:
    def __init__(self, workdir: str, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.location = storage.join(workdir, LOCK_FILE)
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Takes the lock (or a stale one), or raises UserError naming the holder."""
        if _create_exclusively(self.location, self._record()):
            self._start_heartbeat()
            return
        holder = _read(self.location)
        reason = self._stale(holder)
        if reason is None:
            raise UserError(
                f"{os.path.dirname(self.location)} is being trained by process {holder.get('pid')} on "
                f"{holder.get('host')} (since {_when(holder.get('started'))}, lock {self.location}): stop it first, "
                f"or train into another --workdir (a lock without a heartbeat for {self.stale_after_s:.0f} s is "
                "taken over)")
        log.warning("taking over the lock of process %s on %s: %s", holder.get("pid"), holder.get("host"), reason)
        storage.path(self.location).unlink(missing_ok=True)
        if not _create_exclusively(self.location, self._record()):  # another process took it over first
            raise UserError(f"another process took over the stale lock {self.location} at the same time: stop it "
                            "first, or train into another --workdir")
        self._start_heartbeat()

    def release(self) -> None:
        """Stops the heartbeat and deletes the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
            if _read(self.location).get("token") == self.token:
                storage.path(self.location).unlink(missing_ok=True)

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": self.started,
                           "heartbeat": time.time(), "token": self.token}).encode()

    def _stale(self, holder: dict[str, Any]) -> str | None:
        """Why the holder is gone, or None if it may still be training."""
        if not holder:
            return "the lock file is empty or unreadable"
        if holder.get("host") == socket.gethostname() and not _process_exists(holder.get("pid")):
            return f"process {holder.get('pid')} no longer exists"
        age = time.time() - float(holder.get("heartbeat", 0))
        if age > self.stale_after_s:
            return f"its heartbeat is {age:.0f} s old (stale after {self.stale_after_s:.0f} s)"
        return None

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if _read(self.location).get("token") != self.token:
                    log.warning("the lock %s is no longer ours: another process took it over", self.location)
                    return
                storage.write_atomically(self.location, self._record())
            except OSError as error:  # a storage hiccup: try again at the next beat
                log.warning("could not refresh the lock %s: %s", self.location, error)


def _create_exclusively(location: str, data: bytes) -> bool:
    """Creates `location` holding `data` unless it exists; False if it does."""
    storage.make_folder(os.path.dirname(location))
    if storage.is_remote(location):
        import fsspec

        try:
            fsspec.filesystem("gs").pipe_file(location, data, mode="create")  # ifGenerationMatch=0
        except FileExistsError:
            return False
        return True
    partial = f"{location}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(partial, "wb") as f:
        f.write(data)
    try:
        os.link(partial, location)  # atomic, and fails if the lock exists
    except FileExistsError:
        return False
    finally:
        os.unlink(partial)
    return True


def _read(location: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_bytes(location))
    except (OSError, ValueError):
        return {}


def _process_exists(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # someone else's process, or no pid to check: assume alive
    return True


def _when(started: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(started)))
    except (TypeError, ValueError):
        return "an unknown time"
