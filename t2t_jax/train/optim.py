"""The paper's optimizer (section 5.3): Adam(0.9, 0.98, 1e-9) with

    lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

and, by config, a constant or cosine schedule with linear warmup, gradient clipping and weight decay.

A time-budgeted cosine (train.schedule_clock=time) decays over training time, not steps: the optimizer's
schedule is the warmup to the peak, and every update is scaled by `budget_decay(seconds / max_seconds)`, which
the loop computes from the training time all processes agree on. A slow machine makes fewer updates, a fast one
more; both end annealed when the budget ends.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import optax

from t2t_jax.errors import UserError
from t2t_jax.settings import TrainSettings


def learning_rate_schedule(train_config: TrainSettings | Any, d_model: int) -> optax.Schedule:
    """train.schedule: 'rsqrt' (the paper, times train.learning_rate_scale), 'constant' or 'cosine'
    (peak train.learning_rate after train.warmup_steps). `train_config`: TrainSettings or config.train."""
    train_config = TrainSettings.from_config(train_config)
    kind, warmup = train_config.schedule, train_config.warmup_steps
    if kind == "rsqrt":
        scale = train_config.learning_rate_scale * d_model**-0.5

        def rsqrt(count: jnp.ndarray) -> jnp.ndarray:
            step = jnp.maximum(count + 1, 1).astype(jnp.float32)  # the paper counts steps from 1
            return scale * jnp.minimum(step**-0.5, step * warmup**-1.5)

        return rsqrt
    if kind == "constant" or train_config.timed:  # timed: the decay is budget_decay's
        return optax.linear_schedule(0.0, train_config.learning_rate, max(warmup, 1))
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, train_config.learning_rate, max(warmup, 1), max(train_config.steps, warmup + 1)
        )
    raise UserError(f"train.schedule must be rsqrt, constant or cosine, got {kind!r}")


def make_optimizer(train_config: TrainSettings | Any, d_model: int) -> optax.GradientTransformation:
    """Adam with the paper's betas and epsilon by default; clipping and decoupled weight decay optional."""
    train_config = TrainSettings.from_config(train_config)
    schedule = learning_rate_schedule(train_config, d_model)
    adam = optax.adamw(
        schedule, b1=train_config.adam_b1, b2=train_config.adam_b2, eps=train_config.adam_eps,
        weight_decay=train_config.weight_decay,
    )
    if train_config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), adam)
    return adam


def budget_decay(progress: float) -> float:
    """The cosine's factor at `progress` (training time over the budget): 1 at the start, 0 at the end."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
