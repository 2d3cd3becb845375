"""The jitted training programs of one model, optimizer and mesh: what the trainer runs and `t2t-jax plan`
compiles ahead of time for a TPU topology."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from t2t_jax import sharding
from t2t_jax.train import step


class Programs(NamedTuple):
    train_step: Any  # (state, batch, key, lr_scale) -> (state, metrics): one update from one microbatch
    compute_gradients: Any  # (params, batch, key) -> (grads, metrics): one microbatch of an accumulated update
    add: Any  # (grads, grads) -> grads
    apply_gradients: Any  # (state, grads, metrics, lr_scale) -> (state, metrics)
    eval_step: Any  # (params, batch) -> metric sums


def jit_programs(
    model: nn.Module, optimizer: optax.GradientTransformation, label_smoothing: float, state_shardings: Any,
    mesh: Mesh,
) -> Programs:
    """The programs with their input and output shardings; the state is donated. They are traced with the mesh
    and its rules in force, so that the model's activation constraints apply."""
    batch, replicated = sharding.batch_sharding(mesh), NamedSharding(mesh, PartitionSpec())
    on_mesh = functools.partial(sharding.under_rules, mesh=mesh)
    return Programs(
        train_step=jax.jit(
            on_mesh(functools.partial(step.train_step, model=model, optimizer=optimizer,
                                      label_smoothing=label_smoothing)),
            in_shardings=(state_shardings, batch, replicated, replicated), out_shardings=(state_shardings, replicated),
            donate_argnums=0,
        ),
        compute_gradients=jax.jit(
            on_mesh(functools.partial(step.compute_gradients, model=model, label_smoothing=label_smoothing)),
            in_shardings=(state_shardings.params, batch, replicated),
            out_shardings=(state_shardings.params, replicated),
        ),
        add=jax.jit(step.add_trees, donate_argnums=0),
        apply_gradients=jax.jit(
            functools.partial(step.apply_gradients, optimizer=optimizer),
            in_shardings=(state_shardings, state_shardings.params, replicated, replicated),
            out_shardings=(state_shardings, replicated), donate_argnums=0,
        ),
        eval_step=jax.jit(
            on_mesh(functools.partial(step.eval_step, model=model, label_smoothing=label_smoothing)),
            in_shardings=(state_shardings.params, batch), out_shardings=replicated,
        ),
    )
