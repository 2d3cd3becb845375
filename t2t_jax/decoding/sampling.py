"""Greedy decoding and sampling (temperature, top-k, top-p), as pure functions over
`tokens_to_logits(previous_tokens [N, 1], cache) -> (logits [N, V], cache)` (see beam_search.py)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from t2t_jax.decoding.beam_search import NEG_INF, TokensToLogits, start_tokens

Array = jax.Array


class SampleResult(NamedTuple):
    sequences: Array  # [batch, max_length] int32; EOS included, zeros after it
    log_probs: Array  # [batch] float32 log-probability of each sequence under the (filtered) distribution


class _State(NamedTuple):
    length: Array  # scalar int32
    tokens: Array  # [batch, max_length]
    log_probs: Array  # [batch]
    ended: Array  # [batch] bool
    rng: Array
    cache: Any


def filter_logits(logits: Array, top_k: int = 0, top_p: float = 1.0) -> Array:
    """Keep the top_k largest logits (0 = all) and the smallest set whose probability reaches top_p."""
    if top_k > 0:
        kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth_largest, NEG_INF, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits), axis=-1)
        # the smallest logit still needed to reach top_p (always keeps the most likely token)
        cutoff_index = jnp.sum(cumulative < top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
        logits = jnp.where(logits < cutoff, NEG_INF, logits)
    return logits


def sample(
    tokens_to_logits: TokensToLogits,
    cache: Any,
    max_lengths: Array,
    rng: Array,
    *,
    max_length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int = 1,
    start_id: int | Array = 0,
) -> SampleResult:
    """Ancestral sampling; temperature 0 is greedy (argmax). Stops when every item has emitted EOS.
    start_id: the first step's previous token, for all items or per item [batch] (a prompt's last token)."""
    batch = max_lengths.shape[0]
    start = start_tokens(start_id, batch)
    max_lengths = jnp.minimum(max_lengths, max_length)
    state = _State(
        length=jnp.zeros((), jnp.int32),
        tokens=jnp.zeros((batch, max_length), jnp.int32),
        log_probs=jnp.zeros((batch,), jnp.float32),
        ended=jnp.zeros((batch,), bool),
        rng=rng,
        cache=cache,
    )

    def not_done(state: _State) -> Array:
        return (state.length < max_length) & ~jnp.all(state.ended)

    def step(state: _State) -> _State:
        previous = jnp.where(
            state.length == 0, start,
            jax.lax.dynamic_index_in_dim(state.tokens, state.length - 1, axis=1, keepdims=False),
        )
        logits, cache = tokens_to_logits(previous[:, None], state.cache)
        logits = logits.astype(jnp.float32)
        at_limit = (state.length + 1 >= max_lengths)[:, None]
        logits = jnp.where(at_limit & (jnp.arange(logits.shape[-1]) != eos_id), NEG_INF, logits)
        rng, key = jax.random.split(state.rng)
        if temperature == 0.0:
            scaled = logits
            token = jnp.argmax(logits, axis=-1)
        else:
            scaled = filter_logits(logits / temperature, top_k, top_p)
            token = jax.random.categorical(key, scaled, axis=-1)
        token_log_prob = jnp.take_along_axis(jax.nn.log_softmax(scaled), token[:, None], axis=-1)[:, 0]
        token = jnp.where(state.ended, 0, token).astype(jnp.int32)
        return _State(
            length=state.length + 1,
            tokens=jax.lax.dynamic_update_index_in_dim(state.tokens, token, state.length, axis=1),
            log_probs=state.log_probs + jnp.where(state.ended, 0.0, token_log_prob),
            ended=state.ended | (token == eos_id),
            rng=rng,
            cache=cache,
        )

    final = jax.lax.while_loop(not_done, step, state)
    return SampleResult(final.tokens, final.log_probs)


def greedy(
    tokens_to_logits: TokensToLogits, cache: Any, max_lengths: Array, *, max_length: int, eos_id: int = 1
) -> SampleResult:
    """The most likely next token at every step."""
    return sample(
        tokens_to_logits, cache, max_lengths, jax.random.PRNGKey(0), max_length=max_length, temperature=0.0,
        eos_id=eos_id,
    )
