"""Beam search with the GNMT length penalty and exact early stopping, as pure functions.

The model is seen only through `tokens_to_logits(previous_tokens [N, 1], cache) -> (logits [N, V], cache)`,
where every cache leaf has the batch as its leading axis (scalars, such as a step index, are shared).
Scores are log-probabilities divided by the length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016),
all in float32. Each batch item is decoded independently of the others: its own maximum length, its own
stopping rule, so its output does not depend on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Cache = Any
TokensToLogits = Callable[[Array, Cache], tuple[Array, Cache]]
NEG_INF = float("-inf")


class BeamSearchResult(NamedTuple):
    sequences: Array  # [batch, beam, max_length] int32, best first; EOS included, zeros after it
    scores: Array  # [batch, beam] float32 length-normalized log-probabilities, best first


class _State(NamedTuple):
    length: Array  # scalar int32: tokens generated so far
    live_tokens: Array  # [batch, beam, max_length]
    live_log_probs: Array  # [batch, beam], sorted best first
    finished_tokens: Array  # [batch, beam, max_length]
    finished_scores: Array  # [batch, beam], sorted best first; -inf = empty slot
    cache: Cache  # leaves [batch * beam, ...]


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def expand_to_beams(tree: Any, beam_size: int) -> Any:
    """Repeat every batch-major leaf beam_size times: [batch, ...] -> [batch * beam, ...]."""
    return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else jnp.repeat(x, beam_size, axis=0), tree)


def gather_beams(tree: Any, beam_indices: Array) -> Any:
    """Select beams per batch item: leaves [batch * old_beam, ...] and indices [batch, new_beam]
    give leaves [batch * new_beam, ...]."""
    batch, new_beams = beam_indices.shape

    def gather(x: Array) -> Array:
        if x.ndim == 0:
            return x
        old_beams = x.shape[0] // batch
        rows = (jnp.arange(batch)[:, None] * old_beams + beam_indices).reshape(batch * new_beams)
        return jnp.take(x, rows, axis=0)

    return jax.tree_util.tree_map(gather, tree)


def start_tokens(start_id: int | Array, batch: int) -> Array:
    """The first step's previous token of every item [batch]: one id for all, or one per item."""
    return jnp.broadcast_to(jnp.asarray(start_id, jnp.int32), (batch,))


def _take(values: Array, indices: Array) -> Array:
    """values [batch, n, ...], indices [batch, k] -> [batch, k, ...]."""
    return jnp.take_along_axis(values, indices.reshape(indices.shape + (1,) * (values.ndim - 2)), axis=1)


def beam_search(
    tokens_to_logits: TokensToLogits,
    cache: Cache,
    max_lengths: Array,
    *,
    max_length: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    eos_id: int = 1,
    start_id: int | Array = 0,
    reorder_cache: Callable[[Cache, Array], Cache] | None = None,
) -> BeamSearchResult:
    """Beam search for a batch.

    By default `cache` leaves are [batch, ...]; they are expanded to the beams here and reordered with
    `gather_beams`. A model with its own beam-aware cache (see t2t_jax.model.inference) passes a cache that
    is already laid out for batch * beam hypotheses and `reorder_cache(cache, parents [batch, beam])`.

    max_lengths [batch]: each item's longest output (e.g. source length + 50), at most `max_length`, the
    static buffer size. A hypothesis that reaches its item's limit is ended there with EOS.
    Stops once every item has `beam_size` finished hypotheses, none of which a live one can still beat.
    start_id: the first step's previous token, for all items or per item [batch] (e.g. each prompt's last token
    after a language model's prefill).
    """
    batch = max_lengths.shape[0]
    start = start_tokens(start_id, batch)[:, None]  # [batch, 1]
    max_lengths = jnp.minimum(max_lengths, max_length)
    tokens = jnp.zeros((batch, beam_size, max_length), jnp.int32)
    state = _State(
        length=jnp.zeros((), jnp.int32),
        live_tokens=tokens,
        live_log_probs=jnp.full((batch, beam_size), NEG_INF).at[:, 0].set(0.0),  # one live beam to start
        finished_tokens=tokens,
        finished_scores=jnp.full((batch, beam_size), NEG_INF),
        cache=expand_to_beams(cache, beam_size) if reorder_cache is None else cache,
    )
    reorder = gather_beams if reorder_cache is None else reorder_cache

    def not_done(state: _State) -> Array:
        best_live = state.live_log_probs[:, 0] / length_penalty(max_lengths, alpha)  # best any live one can do
        worst_kept = state.finished_scores[:, -1]
        return (state.length < max_length) & ~jnp.all(worst_kept >= best_live)

    def step(state: _State) -> _State:
        previous = jnp.where(
            state.length == 0, start,
            jax.lax.dynamic_index_in_dim(state.live_tokens, state.length - 1, axis=2, keepdims=False),
        )  # [batch, beam]
        logits, cache = tokens_to_logits(previous.reshape(batch * beam_size, 1), state.cache)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, beam_size, -1)
        vocab = log_probs.shape[-1]
        length = state.length + 1
        at_limit = (length >= max_lengths)[:, None, None]  # [batch, 1, 1]: only EOS may follow
        log_probs = jnp.where(at_limit & (jnp.arange(vocab) != eos_id), NEG_INF, log_probs)
        candidates = (state.live_log_probs[:, :, None] + log_probs).reshape(batch, beam_size * vocab)

        # 2 * beam candidates always hold beam non-EOS ones to continue with.
        top_log_probs, top_ids = jax.lax.top_k(candidates, 2 * beam_size)  # [batch, 2 * beam]
        parent, token = top_ids // vocab, top_ids % vocab
        top_tokens = _take(state.live_tokens, parent)
        top_tokens = jax.lax.dynamic_update_index_in_dim(top_tokens, token, state.length, axis=2)
        ended = token == eos_id

        live_log_probs, keep = jax.lax.top_k(jnp.where(ended, NEG_INF, top_log_probs), beam_size)
        cache = reorder(cache, _take(parent, keep))

        # as in fairseq, an EOS candidate ends a hypothesis only if it ranks among the beam best candidates
        # (so that beam size 1 is exactly greedy search)
        finishes = ended & (jnp.arange(2 * beam_size) < beam_size)
        new_scores = jnp.where(finishes, top_log_probs / length_penalty(length, alpha), NEG_INF)
        all_scores = jnp.concatenate([state.finished_scores, new_scores], axis=1)
        finished_scores, best = jax.lax.top_k(all_scores, beam_size)
        all_tokens = jnp.concatenate([state.finished_tokens, top_tokens], axis=1)
        return _State(
            length=length,
            live_tokens=_take(top_tokens, keep),
            live_log_probs=live_log_probs,
            finished_tokens=_take(all_tokens, best),
            finished_scores=finished_scores,
            cache=cache,
        )

    final = jax.lax.while_loop(not_done, step, state)
    return BeamSearchResult(final.finished_tokens, final.finished_scores)
