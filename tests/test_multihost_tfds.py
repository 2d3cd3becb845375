"""TFDS on several hosts (2 processes through jax.distributed, a dataset that prepares itself without a download):
process 0 prepares first; the other host then finds a shared data_dir prepared, or prepares its own copy when its
data_dir is its own disk. Before, process 0 prepared alone and every other host failed with "not prepared"."""

import subprocess
import sys
import textwrap

import pytest
from train_helpers import ROOT, cpu_devices_env, distributed_env, free_port

pytestmark = pytest.mark.slow  # two processes train

TRAIN = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import tfds_tiny  # registers t2t_tiny_parallel
    from t2t_jax.cli import main
    main(sys.argv[1:])
""")


def train_on_two_hosts(workdir, data_dirs, log):
    port = free_port()
    processes = []
    for rank, data_dir in enumerate(data_dirs):
        args = ["train", "--config", "configs/tiny.py", "--workdir", str(workdir),
                "--config.data.train=tfds:t2t_tiny_parallel", "--config.data.eval=tfds:t2t_tiny_parallel",
                "--config.data.source_lang=en", "--config.data.target_lang=de",
                f"--config.data.tfds_data_dir={data_dir}",
                "--config.data.vocab_size=48", "--config.data.vocab_sample_lines=800", "--config.data.batch_tokens=128",
                "--config.data.max_source_length=32", "--config.data.max_target_length=32",
                "--config.data.shuffle_buffer=16", "--config.train.steps=2", "--config.train.eval_every=2",
                "--config.train.eval_examples=8", "--config.train.checkpoint_every=2", "--config.train.average_last=0",
                "--config.model.d_model=32", "--config.model.d_ff=64", "--config.model.num_heads=2"]
        processes.append(subprocess.Popen(
            [sys.executable, "-c", TRAIN, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=cpu_devices_env(1, T2T_TEST_PREPARE_LOG=str(log), **distributed_env(port, rank))))
    outputs = [process.communicate(timeout=400) for process in processes]
    return [(process.returncode, err.decode()) for process, (_, err) in zip(processes, outputs)]


def _prepared_by(log):
    return sorted(log.read_text().split()) if log.exists() else []


def test_a_shared_data_dir_is_prepared_once_by_process_0(tmp_path):
    results = train_on_two_hosts(tmp_path / "w", [tmp_path / "shared"] * 2, tmp_path / "log")
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"process {rank}:\n{err[-3000:]}"
    assert _prepared_by(tmp_path / "log") == ["0"]


def test_each_host_prepares_its_own_copy_on_its_own_disk(tmp_path):
    results = train_on_two_hosts(tmp_path / "w", [tmp_path / "host0", tmp_path / "host1"], tmp_path / "log")
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"process {rank}:\n{err[-3000:]}"
    assert _prepared_by(tmp_path / "log") == ["0", "1"]


def test_a_host_that_cannot_prepare_stops_both_with_one_error(tmp_path):
    """Host 1's data_dir is a file, not a folder: both hosts exit 2 naming process 1, neither waits forever."""
    (tmp_path / "not-a-folder").write_text("")
    results = train_on_two_hosts(tmp_path / "w", [tmp_path / "host0", tmp_path / "not-a-folder"], tmp_path / "log")
    for code, err in results:
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: process 1: ") and "Traceback" not in err, err[-3000:]
