"""Pure train and eval steps; the loop jits them with shardings.

Gradients are of the summed token loss; they are divided by the number of target tokens of the whole
update, so accumulating k microbatches (of any shapes) gives the same update as one batch holding them all.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from t2t_jax.model import TransformerLM
from t2t_jax.train.loss import loss_metrics

Array = jax.Array
Batch = dict[str, Array]
Metrics = dict[str, Array]


@flax.struct.dataclass
class TrainState:
    step: Array  # int32 scalar: updates applied so far
    params: Any
    opt_state: Any


def model_inputs(batch: Batch) -> dict[str, Array]:
    """The model's keyword arguments from a data batch (packed batches carry segment ids and positions)."""
    names = {
        "inputs_segmentation": "inputs_segmentation", "inputs_positions": "inputs_position",
        "targets_segmentation": "targets_segmentation", "targets_positions": "targets_position",
    }
    return {arg: batch[key] for arg, key in names.items() if key in batch}


def forward(model: nn.Module, params: Any, batch: Batch, **kwargs: Any) -> Array:
    """The model's float32 logits [B, T, V] for a batch: an encoder-decoder reads inputs and targets, a
    decoder-only language model (`TransformerLM`) its targets only."""
    inputs = model_inputs(batch)
    if isinstance(model, TransformerLM):
        return model.apply({"params": params}, batch["targets"], inputs.get("targets_segmentation"),
                           inputs.get("targets_positions"), **kwargs)
    return model.apply({"params": params}, batch["inputs"], batch["targets"], **inputs, **kwargs)


def compute_gradients(
    params: Any, batch: Batch, dropout_key: Array, *, model: nn.Module, label_smoothing: float
) -> tuple[Any, Metrics]:
    """Gradients of the summed smoothed loss over one microbatch, and its metric sums."""

    def summed_loss(params: Any) -> tuple[Array, Metrics]:
        logits = forward(model, params, batch, deterministic=False, rngs={"dropout": dropout_key})
        metrics = loss_metrics(logits, batch["targets"], label_smoothing)
        return metrics["loss"], metrics

    grads, metrics = jax.grad(summed_loss, has_aux=True)(params)
    return grads, metrics


def apply_gradients(
    state: TrainState, grads: Any, metrics: Metrics, lr_scale: Array, *, optimizer: optax.GradientTransformation
) -> tuple[TrainState, Metrics]:
    """One optimizer update with the token-mean gradient; the update is scaled by `lr_scale` (a float32 scalar:
    1, or the decay of a time-budgeted schedule, which the host computes from the training time)."""
    grads = jax.tree_util.tree_map(lambda g: g / jnp.maximum(metrics["tokens"], 1.0), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda update: update * lr_scale.astype(update.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    norms = {"grad_norm": optax.global_norm(grads), "update_norm": optax.global_norm(updates), "updates": 1.0}
    metrics = {**metrics, **norms}  # norms are summed over a logging interval, then divided by updates
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def train_step(
    state: TrainState, batch: Batch, dropout_key: Array, lr_scale: Array, *, model: nn.Module,
    optimizer: optax.GradientTransformation, label_smoothing: float,
) -> tuple[TrainState, Metrics]:
    """compute_gradients + apply_gradients in one program (no accumulation)."""
    grads, metrics = compute_gradients(
        state.params, batch, dropout_key, model=model, label_smoothing=label_smoothing
    )
    return apply_gradients(state, grads, metrics, lr_scale, optimizer=optimizer)


def add_trees(first: Any, second: Any) -> Any:
    return jax.tree_util.tree_map(jnp.add, first, second)


def eval_step(params: Any, batch: Batch, *, model: nn.Module, label_smoothing: float) -> Metrics:
    logits = forward(model, params, batch, deterministic=True)
    return loss_metrics(logits, batch["targets"], label_smoothing)


def dropout_key(seed: int, step: Array | int, microbatch: int = 0) -> Array:
    """The dropout key of an update's microbatch: a function of (seed, step), so a resumed run draws the
    same dropout masks as an uninterrupted one."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), step), microbatch)
