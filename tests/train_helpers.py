"""Small, fast training configs and a way to run the CLI in a subprocess, for the train/CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from t2t_jax.configuration import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reverse_config(**train_overrides):
    """configs/reverse.py shrunk to a model and batch that train a step in milliseconds."""
    config = load_config(os.path.join(ROOT, "configs", "reverse.py"))
    config.model.update(d_model=32, d_ff=64, num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
    config.data.update(batch_tokens=256, algorithmic_max_length=8, algorithmic_eval_examples=16, pack_length=32)
    config.train.update(steps=6, log_every=1, eval_every=3, checkpoint_every=3, warmup_steps=5)
    config.train.update(schedule="constant", learning_rate=3e-3)
    config.train.update(train_overrides)
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
