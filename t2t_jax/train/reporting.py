"""Progress a person wants: a console line per interval, TensorBoard summaries, and workdir/metrics.jsonl.
Only process 0 writes."""

from __future__ import annotations

import datetime
import json
import sys
import time
from typing import Any

import jax

from t2t_jax import storage


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


class Reporter:
    def __init__(self, workdir: str, total_steps: int) -> None:
        self.total_steps = total_steps
        self.active = jax.process_index() == 0
        self.started = time.time()
        self._jsonl = self._tensorboard = None
        if self.active:
            from tensorboardX import SummaryWriter

            self._jsonl = storage.LineLog(storage.join(workdir, "metrics.jsonl"))
            self._tensorboard = SummaryWriter(storage.join(workdir, "tensorboard"))  # gs:// too

    def write(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        """Records `metrics` (already host floats) under `kind` (train / eval)."""
        if not self.active:
            return
        self._jsonl.write(json.dumps({"step": step, "kind": kind, "time": round(time.time(), 3), **metrics}))
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{kind}/{name}", value, step)
        self._tensorboard.flush()

    def train_line(self, step: int, metrics: dict[str, float], steps_this_run: int,
                   budget_left: float | None = None) -> None:
        """The console line of an interval; `budget_left`: the seconds a time-budgeted run has left (its ETA)."""
        if not self.active:
            return
        elapsed = time.time() - self.started
        eta = elapsed / max(steps_this_run, 1) * (self.total_steps - step) if budget_left is None else budget_left
        total = "" if budget_left is not None else f"/{self.total_steps}"
        print(
            f"step {step}{total}  loss {metrics['loss']:.4f}  ppl {metrics['perplexity']:.2f}  "
            f"lr {metrics['learning_rate']:.2e}  {metrics['tokens_per_second']:.0f} tok/s  "
            f"elapsed {_duration(elapsed)}  ETA {_duration(eta)}",
            flush=True,
        )

    def say(self, message: str) -> None:
        if self.active:
            print(message, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.active:
            self._jsonl.close()
            self._tensorboard.close()


def bits_per_byte(nll_sum: float, text_bytes: int) -> float:
    """A language model's summed negative log-likelihood (nats) over a text, in bits per byte of that text:
    comparable across tokenizations and vocabularies."""
    import math

    return nll_sum / math.log(2) / max(text_bytes, 1)


def host_metrics(sums: dict[str, Any]) -> dict[str, float]:
    """Token sums -> per-token loss, perplexity and accuracy."""
    import math

    sums = {name: float(value) for name, value in jax.device_get(sums).items()}
    tokens = max(sums.get("tokens", 0.0), 1.0)
    result = {
        "loss": sums["loss"] / tokens,
        "nll": sums["nll"] / tokens,
        "perplexity": math.exp(min(sums["nll"] / tokens, 50.0)),
        "accuracy": sums["correct"] / tokens,
        "tokens": sums["tokens"],
    }
    for name in ("grad_norm", "update_norm"):
        if name in sums:
            result[name] = sums[name] / max(sums["updates"], 1.0)
    return result
