"""Label-smoothed cross entropy (paper section 5.4) with T2T's normalizing constant, and token metrics.

Smoothing puts 1 - eps on the reference token and eps / (V - 1) on every other one. Subtracting the
entropy of that target distribution makes the reported loss 0 at the optimum, as in T2T. Everything here
is float32 whatever the compute dtype; padding (target id 0) has weight 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def token_losses(logits: Array, targets: Array, label_smoothing: float) -> tuple[Array, Array]:
    """Per-token smoothed loss and negative log-likelihood, [batch, length] each."""
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    normalizing = -confidence * jnp.log(confidence)
    if label_smoothing > 0:
        normalizing -= (vocab - 1) * low * jnp.log(low)
    log_probs = jax.nn.log_softmax(logits)  # [batch, length, vocab]
    target_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    # -sum_v q(v) log p(v) with q = low everywhere plus (confidence - low) on the target, without a one-hot
    smoothed = -(confidence - low) * target_log_probs - low * jnp.sum(log_probs, axis=-1) - normalizing
    return smoothed, -target_log_probs


def loss_metrics(logits: Array, targets: Array, label_smoothing: float) -> dict[str, Array]:
    """Sums over the non-padding tokens: smoothed 'loss', 'nll', 'correct' predictions and 'tokens'."""
    weights = (targets > 0).astype(jnp.float32)
    smoothed, nll = token_losses(logits, targets, label_smoothing)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return {
        "loss": jnp.sum(smoothed * weights),
        "nll": jnp.sum(nll * weights),
        "correct": jnp.sum(correct * weights),
        "tokens": jnp.sum(weights),
    }
