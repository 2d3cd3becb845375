"""Glue between a trained Transformer and `t2t_jax.decoding`: the decoding cache and the step function.

    encoded = model.apply(variables, inputs, method=Transformer.encode)          # [items, S, D]
    cache = init_cache(config, params, encoded, inputs, max_length, beam_size)
    result = beam_search(step_fn(config, params), cache, max_lengths, max_length=max_length,
                         beam_size=beam_size, reorder_cache=reorder_cache)

The cache's layout and its reordering (`reorder_cache`) are in model/cache.py. An ensemble decodes with
`ensemble_step_fn` over a tuple of caches, reordered by `reorder_ensemble_cache`.

A decoder-only TransformerLM decodes the same way without the encoder (greedy or sampling, from token 0):
    result = sample(lm_step_fn(config, params), init_lm_cache(config, params, batch, max_length),
                    max_lengths, rng, max_length=max_length, temperature=0.8, top_p=0.9)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import traverse_util

from t2t_jax.model.cache import Cache, reorder_cache
from t2t_jax.model.config import TransformerConfig
from t2t_jax.model.transformer import Transformer, TransformerLM

Array = jax.Array
StepFn = Callable[[Array, Cache], tuple[Array, Cache]]


def decoding_config(config: TransformerConfig) -> TransformerConfig:
    """The model as decoding runs it: per-layer parameters (see `unstack_layers`), nothing recomputed."""
    return config.replace(scan_layers=False, remat="none")


def _stepwise(config: TransformerConfig) -> TransformerConfig:
    """The same model run one token at a time: cached decoding."""
    return decoding_config(config).replace(decode=True)


def init_cache(
    config: TransformerConfig, params: Any, encoded: Array, inputs: Array, max_length: int, beam_size: int = 1
) -> Cache:
    """The decoder's cache for `max_length` steps of `beam_size` hypotheses per source: empty self-attention
    slots, and the encoder-decoder keys/values projected once from `encoded` [items, S, D]."""
    model = Transformer(_stepwise(config))
    placeholder = jnp.zeros((inputs.shape[0] * beam_size, max_length), jnp.int32)
    _, variables = model.apply(
        {"params": params}, encoded, inputs, placeholder, deterministic=True,
        method=Transformer.decode, mutable=["cache"],
    )
    return variables["cache"]


def step_fn(config: TransformerConfig, params: Any) -> StepFn:
    """tokens_to_logits(previous_tokens [items * beams, 1], cache) -> (float32 logits [items * beams, V], cache)."""
    model = Transformer(_stepwise(config))

    def tokens_to_logits(previous_tokens: Array, cache: Cache) -> tuple[Array, Cache]:
        logits, variables = model.apply(
            {"params": params, "cache": cache}, None, None, previous_tokens, deterministic=True,
            method=Transformer.decode, mutable=["cache"],
        )
        return logits[:, 0], variables["cache"]

    return tokens_to_logits


def ensemble_step_fn(configs: Sequence[TransformerConfig], params: Sequence[Any]) -> StepFn:
    """Several models decoding as one, as fairseq's `--path a.pt:b.pt` and Marian's `-m a b` do:
    tokens_to_logits(previous_tokens, caches) -> (the mean of the models' log-probabilities [rows, V], caches),
    with `caches` a tuple of each model's cache (`init_cache` of each). Beam search's log-softmax of that mean
    renormalizes it: the models' normalized geometric mean. One model's step is its own (logits unchanged)."""
    steps = [step_fn(config, model_params) for config, model_params in zip(configs, params)]

    def tokens_to_logits(previous_tokens: Array, caches: tuple[Cache, ...]) -> tuple[Array, tuple[Cache, ...]]:
        outputs = [step(previous_tokens, cache) for step, cache in zip(steps, caches)]
        if len(outputs) == 1:
            return outputs[0][0], (outputs[0][1],)
        log_probs = jnp.stack([jax.nn.log_softmax(logits, axis=-1) for logits, _ in outputs])  # [models, rows, V]
        return jnp.mean(log_probs, axis=0), tuple(cache for _, cache in outputs)

    return tokens_to_logits


def reorder_ensemble_cache(caches: tuple[Cache, ...], parents: Array) -> tuple[Cache, ...]:
    """`reorder_cache` of every model of an ensemble."""
    return tuple(reorder_cache(cache, parents) for cache in caches)


def init_lm_cache(config: TransformerConfig, params: Any, batch_size: int, max_length: int) -> Cache:
    """A decoder-only TransformerLM's cache: empty self-attention slots for `batch_size` sequences of up to
    `max_length` tokens, for greedy decoding and sampling (one hypothesis per sequence)."""
    model = TransformerLM(_stepwise(config))
    placeholder = jnp.zeros((batch_size, max_length), jnp.int32)
    _, variables = model.apply({"params": params}, placeholder, deterministic=True, mutable=["cache"])
    return variables["cache"]


def lm_step_fn(config: TransformerConfig, params: Any) -> StepFn:
    """A TransformerLM's tokens_to_logits(previous_tokens [batch, 1], cache) -> (float32 logits [batch, V], cache)."""
    model = TransformerLM(_stepwise(config))

    def tokens_to_logits(previous_tokens: Array, cache: Cache) -> tuple[Array, Cache]:
        logits, variables = model.apply(
            {"params": params, "cache": cache}, previous_tokens, deterministic=True, mutable=["cache"]
        )
        return logits[:, 0], variables["cache"]

    return tokens_to_logits


def unstack_layers(params: Any) -> Any:
    """Parameters of a `scan_layers=True` model (stacked under '.../layers' with a leading layer axis)
    rewritten as the per-layer 'layers_0', 'layers_1', ... of a loop model, e.g. for decoding (unboxed)."""
    flat = traverse_util.flatten_dict(nn.unbox(params))
    unstacked = {}
    for path, value in flat.items():
        if "layers" not in path:
            unstacked[path] = value
            continue
        at = path.index("layers")
        for layer, layer_value in enumerate(value):
            unstacked[path[:at] + (f"layers_{layer}",) + path[at + 1:]] = layer_value
    return traverse_util.unflatten_dict(unstacked)
