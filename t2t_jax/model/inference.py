"""Glue between a trained Transformer and `t2t_jax.decoding`: the decoding cache and the step function.

    encoded = model.apply(variables, inputs, method=Transformer.encode)          # [items, S, D]
    cache = init_cache(config, params, encoded, inputs, max_length, beam_size)
    result = beam_search(step_fn(config, params), cache, max_lengths, max_length=max_length,
                         beam_size=beam_size, reorder_cache=reorder_cache)

The cache's layout and its reordering (`reorder_cache`) are in model/cache.py. An ensemble decodes with
`ensemble_step_fn` over a tuple of caches, reordered by `reorder_ensemble_cache`.

A decoder-only TransformerLM decodes the same way without the encoder, its prompts (token ids) read in one
forward pass first (prefill):
    prompt = lm_prompts(prompt_ids)                                  # left-padded [items, P] arrays
    cache = init_lm_cache(config, params, items, prompt.length + new_tokens, beam_size)
    cache = prefill_lm(config, params, cache, prompt)[1]             # skip when prompt.length == 0
    result = sample(lm_step_fn(config, params), cache, max_lengths, rng, max_length=new_tokens,
                    temperature=0.8, top_p=0.9, start_id=prompt.last_tokens)
    (or beam_search(..., start_id=prompt.last_tokens, reorder_cache=reorder_cache) with beam_size beams)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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


def init_lm_cache(
    config: TransformerConfig, params: Any, batch_size: int, max_length: int, beam_size: int = 1
) -> Cache:
    """A decoder-only TransformerLM's cache: empty self-attention slots for `batch_size` sequences of up to
    `max_length` tokens (prompt included), each with `beam_size` hypotheses (1 for greedy decoding and
    sampling)."""
    model = TransformerLM(_stepwise(config))
    placeholder = jnp.zeros((batch_size * beam_size, max_length), jnp.int32)
    _, variables = model.apply(
        {"params": params}, placeholder, deterministic=True, items=batch_size, mutable=["cache"]
    )
    return variables["cache"]


class Prompts(NamedTuple):
    """A batch of prompts as a language model's prefill takes them (`lm_prompts`)."""

    inputs: np.ndarray  # [items, P] int32: the decoder's inputs, 0 (start) and each prompt but its last token,
    #                     left-padded with 0 to the longest
    positions: np.ndarray  # [items, P] int32: each input's position in its sequence, -1 at padding
    last_tokens: np.ndarray  # [items] int32: each prompt's last token (0 for an empty prompt), the first step's

    @property
    def length(self) -> int:
        return self.inputs.shape[1]


def lm_prompts(prompts: Sequence[Sequence[int]]) -> Prompts:
    """Token ids of each prompt (no EOS) -> the left-padded prefill arrays and each prompt's last token. The
    decoder reads token t - 1 at position t (0 at position 0), so a prompt of n tokens is n inputs."""
    length = max((len(ids) for ids in prompts), default=0)
    inputs = np.zeros((len(prompts), length), np.int32)
    positions = np.full((len(prompts), length), -1, np.int32)
    last = np.zeros(len(prompts), np.int32)
    for row, ids in enumerate(prompts):
        shifted = [0, *ids]  # [n + 1]
        if ids:
            inputs[row, length - len(ids):] = shifted[:-1]
            positions[row, length - len(ids):] = np.arange(len(ids))
        last[row] = shifted[-1]
    return Prompts(inputs, positions, last)


def prefill_lm(config: TransformerConfig, params: Any, cache: Cache, prompts: Prompts) -> tuple[Array, Cache]:
    """Reads every prompt into `cache` (from `init_lm_cache`, before any step) in one forward pass:
    (float32 logits [items, P, V] at each prompt input, the cache). Then the first step takes prompts.last_tokens."""
    model = TransformerLM(_stepwise(config))
    logits, variables = model.apply(
        {"params": params, "cache": cache}, jnp.asarray(prompts.inputs), None, jnp.asarray(prompts.positions),
        deterministic=True, mutable=["cache"],
    )
    return logits, variables["cache"]


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
