"""The launch scripts' --dry-run output: the commands they would run."""

import subprocess

from train_helpers import ROOT


def dry_run(script, *args):
    result = subprocess.run(["bash", f"launch/{script}", *args, "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_tpu_pod_creates_the_vm_installs_and_trains_on_all_workers():
    commands = dry_run("tpu_pod.sh", "--name", "t2t", "--zone", "us-central2-b", "--accelerator", "v4-32",
                       "--config", "configs/big.py", "--workdir", "gs://bucket/big")
    assert len(commands) == 3
    assert commands[0].startswith("gcloud compute tpus tpu-vm create t2t --zone=us-central2-b --accelerator-type=v4-32")
    assert all("--worker=all" in command for command in commands[1:])
    assert "pip install -q -e '.[tpu]'" in commands[1]  # the README's TPU install
    assert "T2T_TPU_POD=1 t2t-jax train --config configs/big.py --workdir gs://bucket/big" in commands[2]


def test_gpu_local_uses_every_local_gpu_on_the_data_axis():
    (command,) = dry_run("gpu_local.sh", "--config", "configs/base.py", "--workdir", "runs/base")
    assert "t2t-jax train --config configs/base.py --workdir runs/base --config.mesh.data=-1" in command


def test_slurm_runs_one_task_per_node_with_the_expected_device_count():
    (command,) = dry_run("slurm.sbatch", "--config", "configs/big.py", "--workdir", "/shared/big")
    assert command.startswith("srun --ntasks-per-node=1")
    assert "T2T_EXPECTED_DEVICES=16" in command  # 2 nodes x 8 GPUs by default
    assert "t2t-jax train --config configs/big.py --workdir /shared/big" in command


def test_missing_arguments_are_clear_errors():
    result = subprocess.run(["bash", "launch/gpu_local.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: --config and --workdir are required")
