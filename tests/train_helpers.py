"""Small, fast training configs (as a config or as command-line flags), and ways to run the CLI and other
processes (simulated devices, jax.distributed) in subprocesses, for the train/CLI tests and their scripts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from t2t_jax.configuration import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = dict(d_model=32, d_ff=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
TINY_DATA = dict(algorithmic_max_length=8, pack_length=32)  # short reverse-task sequences, packed into rows of 32


def config_flags(**sections) -> list[str]:
    """--config.SECTION.KEY=VALUE flags, e.g. config_flags(model=TINY_MODEL, train={"steps": 4})."""
    return [f"--config.{section}.{key}={value}" for section, values in sections.items()
            for key, value in values.items()]


def reverse_config(**train_overrides):
    """configs/reverse.py shrunk to a model and batch that train a step in milliseconds."""
    config = load_config(os.path.join(ROOT, "configs", "reverse.py"))
    config.model.update(TINY_MODEL)
    config.data.update(TINY_DATA, batch_tokens=256, algorithmic_eval_examples=16)
    config.train.update(steps=6, log_every=1, eval_every=3, checkpoint_every=3, warmup_steps=5)
    config.train.update(schedule="constant", learning_rate=3e-3)
    config.train.update(train_overrides)
    return config


def wide_reverse_config(**train_overrides):
    """reverse_config with 8 heads, d_model 64 and d_ff 128: every mesh axis of up to 8 devices divides what it
    splits."""
    config = reverse_config(**train_overrides)
    config.model.update(num_heads=8, d_model=64, d_ff=128)
    return config


def workdir_metrics(workdir: str) -> list[dict]:
    """The rows of workdir/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def train_losses(workdir: str) -> dict[int, float]:
    """step -> train loss, from workdir/metrics.jsonl."""
    return {row["step"]: row["loss"] for row in workdir_metrics(workdir) if row["kind"] == "train"}


def run_cli(*args: str, timeout: int = 300, stdin: bytes | None = None, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "t2t_jax", *args], cwd=cwd, capture_output=True, timeout=timeout, input=stdin,
    )


def assert_clear_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """The CLI failed the way a user's mistake should: exit 2, one 'error: ...' line naming `words`, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for word in words:
        assert word in last, (word, last)


def free_port() -> int:
    """A TCP port on localhost that is free now."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def cpu_devices_env(devices: int, **extra: str) -> dict[str, str]:
    """This process's environment for a child that sees `devices` simulated CPU devices, plus `extra`."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, **extra}


def distributed_env(port: int, rank: int) -> dict[str, str]:
    """Process `rank` of 2 on this machine, coordinated through localhost:`port`."""
    return {"T2T_COORDINATOR": f"localhost:{port}", "T2T_NUM_PROCESSES": "2", "T2T_PROCESS_ID": str(rank)}
