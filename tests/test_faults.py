"""Faults a run meets, injected: nothing is lost and the run resumes at its last complete checkpoint.

kill -9 while asynchronous checkpoint saves are in flight, kill -9 of `t2t-jax average`, SIGTERM during an
evaluation, a workdir whose vocab.model went missing, a save that cannot write (a file-size cap, and a real file
system that fills up). (A corrupt latest checkpoint: test_train_loop and test_object_storage; a host lost from a
multi-host run: test_scale.)"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import ROOT, assert_clear_error, run_cli, workdir_metrics

pytestmark = pytest.mark.slow

SMALL = ["--config", "configs/reverse.py", "--config.model.d_model=32", "--config.model.d_ff=64",
         "--config.model.num_heads=2", "--config.model.num_encoder_layers=1", "--config.model.num_decoder_layers=1",
         "--config.data.batch_tokens=256", "--config.data.algorithmic_max_length=8", "--config.data.pack_length=32",
         "--config.train.log_every=1", "--config.train.warmup_steps=5", "--config.train.average_last=0"]


def saved_steps(workdir):
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def start_training(workdir, *flags):
    return subprocess.Popen([sys.executable, "-m", "t2t_jax", "train", *SMALL, "--workdir", workdir, *flags],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def resume(workdir, steps):
    result = run_cli("train", *SMALL, "--workdir", workdir, f"--config.train.steps={steps}",
                     "--config.train.eval_every=1000")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode()


def test_kill_9_during_asynchronous_saves_resumes_at_the_last_complete_checkpoint(tmp_path):
    """A checkpoint every step (saved asynchronously while the next steps run), killed three times at
    different moments: each restart resumes from the newest complete checkpoint; nothing is set aside as
    corrupt and no finished checkpoint is lost."""
    workdir = str(tmp_path / "w")
    flags = ["--config.train.steps=100000", "--config.train.checkpoint_every=1", "--config.train.keep_checkpoints=3",
             "--config.train.eval_every=100000"]
    for delay in (0.0, 0.15, 0.4):
        before = saved_steps(workdir)
        run = start_training(workdir, *flags)
        newest = before[-1] if before else 0
        for line in run.stdout:  # two checkpoints newer than the last run's: saves are under way
            if line.startswith(b"step ") and saved_steps(workdir) and saved_steps(workdir)[-1] > newest + 1:
                break
        time.sleep(delay)
        run.kill()  # SIGKILL: no handler, no cleanup
        run.wait(60)
        complete = saved_steps(workdir)
        assert complete and complete[-1] > (before[-1] if before else 0)
    output = resume(workdir, complete[-1] + 2)
    assert f"training {complete[-1]} -> {complete[-1] + 2}" in output, output[-2000:]
    assert not os.path.exists(os.path.join(workdir, "corrupt"))
    assert complete[-1] + 2 in saved_steps(workdir)


def test_kill_9_of_average_leaves_the_checkpoints_and_a_rerun_averages(tmp_path):
    workdir = str(tmp_path / "w")
    resume(workdir, 6)  # checkpoints at the end only: make three
    for steps in (8, 10):
        resume(workdir, steps)
    steps = saved_steps(workdir)
    for delay in (1.0, 3.0):
        average = subprocess.Popen([sys.executable, "-m", "t2t_jax", "average", "--workdir", workdir, "--last", "3"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        average.kill()
        average.wait(60)
        assert saved_steps(workdir) == steps  # the checkpoints averaged are untouched
    result = run_cli("average", "--workdir", workdir, "--last", "3")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    decoded = run_cli("decode", "--workdir", workdir, "--checkpoint", "averaged", stdin=b"1 2 3\n")
    assert decoded.returncode == 0 and len(decoded.stdout.decode().splitlines()) == 1
    assert saved_steps(workdir) == steps


def test_sigterm_during_an_evaluation_finishes_it_saves_and_resumes(tmp_path):
    workdir = str(tmp_path / "w")
    run = start_training(workdir, "--config.train.steps=100000", "--config.train.eval_every=3",
                         "--config.train.checkpoint_every=100000", "--config.data.algorithmic_eval_examples=3000")
    for line in run.stdout:
        if line.startswith(b"step 3/"):  # the evaluation of step 3 starts now
            run.send_signal(signal.SIGTERM)
            break
    output = run.communicate(timeout=300)[0].decode()
    assert run.returncode == 0, output[-3000:]
    evals = [row for row in workdir_metrics(workdir) if row["kind"] == "eval"]
    assert evals and evals[0]["step"] == 3  # the evaluation under way was finished and logged
    stopped = saved_steps(workdir)[-1]
    assert stopped >= 3
    assert f"training {stopped} -> {stopped + 1}" in resume(workdir, stopped + 1)


def test_a_missing_vocabulary_is_one_clear_error_and_nothing_moves(tmp_path):
    workdir = tmp_path / "w"
    resume(str(workdir), 2)
    (workdir / "vocab.model").unlink()
    steps = saved_steps(str(workdir))
    trained = run_cli("train", *SMALL, "--workdir", str(workdir), "--config.train.steps=4")
    assert_clear_error(trained, "vocab.model is missing")
    assert saved_steps(str(workdir)) == steps and not (workdir / "vocab.model").exists()
    assert_clear_error(run_cli("decode", "--workdir", str(workdir), stdin=b"1 2\n"), "vocab.model")


# the CLI with every file it writes capped (RLIMIT_FSIZE, set in the child itself: no fork from this process)
CAPPED = ("import resource, runpy, sys; limit = int(sys.argv.pop(1)); "
          "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); sys.argv[0] = 't2t-jax'; "
          "runpy.run_module('t2t_jax', run_name='__main__')")


def save_of_step_4_fails(workdir, launcher, reason):
    """Trains `workdir` from its checkpoint of step 2 to step 4 through `launcher` (the command line before `train`):
    it trains, then the save fails with `reason` in one error line (no traceback), and step 2 stays the newest
    complete checkpoint."""
    result = subprocess.run([*launcher, "train", *SMALL, "--workdir", workdir, "--config.train.steps=4",
                             "--config.train.eval_every=1000"], cwd=ROOT, capture_output=True, timeout=300)
    assert result.returncode != 0, result.stdout.decode()[-2000:]
    errors = result.stderr.decode()
    assert "training 2 -> 4" in result.stdout.decode() and reason in errors, errors[-3000:]
    assert "Traceback" not in errors and "error: could not write" in errors, errors[-3000:]
    assert saved_steps(workdir)[-1] == 2, saved_steps(workdir)


def test_a_save_that_cannot_write_fails_the_run_and_the_last_checkpoint_stays(tmp_path):
    """The disk 'fills up' during a save (every file is capped at 64 KiB: the checkpoint's array file cannot be
    written, the small logs can): the run fails, the checkpoint before stays the newest complete one, and once there
    is room again the run resumes from it."""
    workdir = str(tmp_path / "w")
    resume(workdir, 2)
    # writes beyond the cap fail with EFBIG (Python ignores SIGXFSZ), as they fail with ENOSPC on a full disk
    save_of_step_4_fails(workdir, [sys.executable, "-c", CAPPED, str(64 * 1024)], "File too large")
    output = resume(workdir, 4)
    assert "training 2 -> 4" in output, output[-2000:]
    assert saved_steps(workdir)[-1] == 4


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs: a real file system that fills up (mounting one needs root, as on CI's machines)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True) \
        if shutil.which("mount") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the RLIMIT_FSIZE test above takes the same path")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_up_during_a_save_keeps_the_last_checkpoint_and_the_run_resumes(small_disk):
    """The workdir's file system has 48 KiB left when the next checkpoint is saved: ENOSPC, one error line, the
    checkpoint before stays; once there is room the run resumes from it."""
    workdir = str(small_disk / "w")
    resume(workdir, 2)
    room = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(bytes(room.f_bavail * room.f_frsize - 48 * 1024))
    save_of_step_4_fails(workdir, [sys.executable, "-m", "t2t_jax"], "No space left on device")
    assert saved_steps(workdir) == [2]
    filler.unlink()
    assert "training 2 -> 4" in resume(workdir, 4)
    assert saved_steps(workdir) == [2, 4]


def test_late_callbacks_of_a_closed_event_loop_are_dropped_and_other_unraisables_kept(monkeypatch):
    """After a failed checkpoint write, tensorstore's remaining writes call back into orbax's closed event loop; the
    CLI's unraisable hook drops those (one traceback per write, which broke the one-line error), nothing else."""
    from types import SimpleNamespace

    from t2t_jax.errors import drop_late_callbacks

    passed_on = []
    monkeypatch.setattr(sys, "__unraisablehook__", passed_on.append)
    late, other = (SimpleNamespace(exc_value=RuntimeError(message)) for message in ("Event loop is closed", "a bug"))
    drop_late_callbacks(late)
    drop_late_callbacks(other)
    assert passed_on == [other]
