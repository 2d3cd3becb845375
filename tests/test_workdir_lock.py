"""One training run per workdir: a second `t2t-jax train` on a workdir in use stops with one line naming the
holder, and a lock whose holder is gone (a dead process on this host, or no heartbeat) is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from train_helpers import ROOT, TINY_MODEL, assert_clear_error, config_flags, run_cli

from t2t_jax.errors import UserError
from t2t_jax.train.workdir_lock import LOCK_FILE, WorkdirLock


def write_lock(workdir, **fields):
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "heartbeat": time.time(),
              "token": "someone"} | fields
    (workdir / LOCK_FILE).write_text(json.dumps(record))


def test_a_held_lock_refuses_a_second_holder_until_released(tmp_path):
    first = WorkdirLock(str(tmp_path))
    first.acquire()
    with pytest.raises(UserError, match=f"being trained by process {os.getpid()} on {socket.gethostname()}"):
        WorkdirLock(str(tmp_path)).acquire()
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    with WorkdirLock(str(tmp_path)):
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, pid=dead.pid)
    with WorkdirLock(str(tmp_path)) as lock:
        assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == lock.token


def test_another_hosts_lock_is_kept_while_its_heartbeat_is_fresh(tmp_path):
    write_lock(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(UserError, match="on elsewhere"):
        WorkdirLock(str(tmp_path), stale_after_s=60).acquire()
    write_lock(tmp_path, host="elsewhere", pid=1, heartbeat=time.time() - 120)
    with WorkdirLock(str(tmp_path), stale_after_s=60):
        pass


def test_the_holder_refreshes_its_heartbeat(tmp_path):
    with WorkdirLock(str(tmp_path), heartbeat_s=0.05):
        first = json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"]
        time.sleep(0.5)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] > first


@pytest.mark.slow
def test_a_second_train_on_a_workdir_in_use_is_one_clear_error(tmp_path):
    workdir = str(tmp_path / "w")
    small = ["--config", "configs/reverse.py", "--workdir", workdir, *config_flags(
        model=TINY_MODEL, data=dict(batch_tokens=256),
        train=dict(log_every=1, steps=100000, checkpoint_every=100000, eval_every=100000),
    )]
    first = subprocess.Popen([sys.executable, "-m", "t2t_jax", "train", *small], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for line in first.stdout:  # training: the lock is taken
            if line.startswith(b"step "):
                break
        second = run_cli("train", *small)
        assert_clear_error(second, "is being trained by process", str(first.pid))
    finally:
        first.send_signal(signal.SIGTERM)
        output = first.communicate(timeout=120)[0].decode()
    assert first.returncode == 0, output[-2000:]
    assert not os.path.exists(os.path.join(workdir, LOCK_FILE))  # released
    assert os.path.isdir(os.path.join(workdir, "checkpoints"))  # the first run's stop checkpoint is untouched
