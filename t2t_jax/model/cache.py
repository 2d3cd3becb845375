"""The decoding cache: what cached decoding keeps between steps, where, and how beam search reorders it.

The cache is Flax's 'cache' collection of the decoder, created by a first call of the decoding model with
full-length placeholder targets (`t2t_jax.model.inference.init_cache`) and updated by every step:

    decoder/                       the decoder's step state (`step_state`)
        index           []                          the step being decoded
        source_valid    [items, source_length]      False at source padding
        slot_beams      [items * beams, max_length] for each live hypothesis and position, the beam slot
                                                    whose key/value holds that position (-1: none, a
                                                    prompt's left padding)
    decoder/layers_N/self_attention/    (`self_attention_slots`)
        cached_key      [items, heads, key_size, beams * max_length]   transposed: Q K is a plain product
        cached_value    [items, heads, beams * max_length, value_size]
    decoder/layers_N/cross_attention/   (`cross_attention_keys`)
        cached_key, cached_value   [items, heads, source_length, size]   projected once per source

Slot s = b * max_length + t holds beam b's position t, written once, at step t, by whichever hypothesis is in
beam b then. A hypothesis's history is a path through the slots, named by its row of slot_beams; reordering
beams (`reorder_cache`) gathers slot_beams only, never the keys and values. Each item's beams attend to keys stored
once per item (the encoder's, or all its beams' slots) in one matrix product per item.

Prefill: a language model's prompts (or any forced prefix) enter in one call of P tokens per item, before the
first step: their keys and values go to beam 0's slots 0..P-1, and every beam's history points there
(slot_beams 0), so all beams share one copy of the prompt. Prompts of different lengths are left-padded to P:
padding slots are -1 in slot_beams (never attended to), and each row's positions count from its first real
token (position = step - the row's padding slots), as if it had no padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from t2t_jax.decoding.beam_search import gather_beams

Array = jax.Array
Cache = Any
COLLECTION = "cache"


class StepState(NamedTuple):
    """What a decoding call's layers need, from `step_state`."""

    self_mask: Array  # [items, 1, queries, beams * max_length]: queries = beams (a step) or P (a prefill)
    cross_mask: Array  # [items, 1, 1, source_length]
    step: Array  # [] the slot position of this call's first token
    positions: Array  # [rows, tokens] each token's position in its own sequence (padding not counted)


def step_state(
    module: nn.Module, inputs: Array | None, targets: Array, prompt_positions: Array | None = None,
    items: int | None = None,
) -> StepState:
    """The decoder's per-call masks and positions, from the cache of `module` (the decoder).

    `targets` is the previous token of every hypothesis [items * beams, 1]; or a prefill [items, P] with
    `prompt_positions` [items, P] (each token's position in its prompt, negative at left padding); or, in the call
    that creates the cache, a placeholder [items * beams, max_length]. `inputs` [items, source_length] is read
    only then; a decoder-only model passes None and its number of `items`. Each later call advances the step and
    records whose slots its tokens were written to.
    """
    rows, length = targets.shape
    primed = module.has_variable(COLLECTION, "index")
    source_valid = module.variable(
        COLLECTION, "source_valid", lambda: jnp.ones((items or rows, 1), bool) if inputs is None else inputs > 0
    )
    index = module.variable(COLLECTION, "index", lambda: jnp.zeros((), jnp.int32))
    slot_beams = module.variable(COLLECTION, "slot_beams", jnp.zeros, (rows, length), jnp.int32)
    items, max_length = source_valid.value.shape[0], slot_beams.value.shape[1]
    beams, step = slot_beams.value.shape[0] // items, index.value
    if primed and prompt_positions is not None:
        return _prefill_state(slot_beams, index, source_valid.value, prompt_positions, beams)
    if primed:
        own_slot = jnp.arange(rows, dtype=jnp.int32) % beams
        slot_beams.value = jax.lax.dynamic_update_index_in_dim(slot_beams.value, own_slot, step, axis=1)
        index.value = step + 1
    history = slot_beams.value.reshape(items, beams, 1, max_length)
    self_mask = (history == jnp.arange(beams)[:, None]) & (jnp.arange(max_length) <= step)
    self_mask = self_mask.reshape(items, 1, beams, beams * max_length)  # query beam -> (slot, position)
    padding = jnp.sum(slot_beams.value < 0, axis=1, keepdims=True)  # [rows, 1] a prompt's left padding
    positions = jnp.broadcast_to(step - padding, targets.shape)
    return StepState(self_mask, source_valid.value[:, None, None, :], step, positions)


def _prefill_state(
    slot_beams: Any, index: Any, source_valid: Array, prompt_positions: Array, beams: int
) -> StepState:
    """A prefill of P tokens per item into beam 0's slots step..step+P-1 (see the module docstring)."""
    items, prompt_length = prompt_positions.shape
    max_length, step = slot_beams.value.shape[1], index.value
    owner = jnp.where(prompt_positions >= 0, 0, -1).astype(jnp.int32)  # [items, P]: beam 0's slot, or padding
    slot_beams.value = jax.lax.dynamic_update_slice(slot_beams.value, jnp.repeat(owner, beams, axis=0), (0, step))
    index.value = step + prompt_length
    query_at = step + jnp.arange(prompt_length)  # [P]
    filled = slot_beams.value[::beams] == 0  # [items, max_length]: beam 0's slots holding real tokens
    visible = filled[:, None, :] & (jnp.arange(max_length) <= query_at[:, None])  # [items, P, max_length]
    others = jnp.zeros((items, prompt_length, (beams - 1) * max_length), bool)  # the other beams' slots
    self_mask = jnp.concatenate([visible, others], axis=-1)[:, None]  # [items, 1, P, beams * max_length]
    return StepState(self_mask, source_valid[:, None, None, :], step, jnp.maximum(prompt_positions, 0))


def slot_positions(slots: int, beams: int) -> Array:
    """The target position of every self-attention slot [slots]: slot s = b * max_length + t holds position t."""
    return jnp.arange(slots, dtype=jnp.int32) % (slots // beams)


def self_attention_slots(
    module: nn.Module,
    key: Array,  # [items * beams, heads, 1, key_size]: this step's; a prefill's [items, heads, P, key_size]
    value: Array,  # [items * beams, heads, 1, value_size]; [items, heads, P, value_size]
    mask: Array,  # [items, 1, beams or P, beams * max_length]
    step: Array | None,
    prefill: bool = False,
) -> tuple[Array, Array, bool]:
    """Writes this step's key and value into each beam's slot at `step` (a prefill's P keys and values into beam
    0's slots from `step`); returns every slot's (keys [items, heads, key_size, slots], values [items, heads,
    slots, value_size], primed). `primed` is False in the call that creates the cache, whose attention output is
    never used."""
    items, heads, slots = mask.shape[0], key.shape[1], mask.shape[3]
    primed = module.has_variable(COLLECTION, "cached_key")
    cached_key = module.variable(COLLECTION, "cached_key", jnp.zeros, (items, heads, key.shape[-1], slots), key.dtype)
    cached_value = module.variable(
        COLLECTION, "cached_value", jnp.zeros, (items, heads, slots, value.shape[-1]), value.dtype
    )
    if primed and prefill:
        cached_key.value = jax.lax.dynamic_update_slice(
            cached_key.value, key.transpose(0, 1, 3, 2).astype(key.dtype), (0, 0, 0, step))
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, 0, step, 0))
    elif primed:
        beams = key.shape[0] // items
        positions = jnp.arange(beams) * (slots // beams) + step
        key = key.reshape(items, beams, heads, -1).transpose(0, 2, 3, 1)  # [items, heads, size, beams]
        value = value.reshape(items, beams, heads, -1).transpose(0, 2, 1, 3)  # [items, heads, beams, size]
        cached_key.value = cached_key.value.at[:, :, :, positions].set(key, unique_indices=True)
        cached_value.value = cached_value.value.at[:, :, positions].set(value, unique_indices=True)
    return cached_key.value, cached_value.value, primed


def cross_attention_keys(
    module: nn.Module, project_key: Callable[[Array], Array], project_value: Callable[[Array], Array],
    encoded: Array | None,  # [items, source_length, d_model] when the cache is created, then None
) -> tuple[Array, Array, bool]:
    """The encoder output's keys and values [items, heads, source_length, size], projected once, when the cache
    is created, and shared by all beams of an item; and whether the cache existed before this call."""
    primed = module.has_variable(COLLECTION, "cached_key")
    cached_key = module.variable(COLLECTION, "cached_key", lambda: project_key(encoded))
    cached_value = module.variable(COLLECTION, "cached_value", lambda: project_value(encoded))
    return cached_key.value, cached_value.value, primed


def reorder_cache(cache: Cache, parents: Array) -> Cache:
    """Beam search's reordering: hypothesis k of item b continues hypothesis parents[b, k] ([items, beams])."""
    decoder = dict(cache["decoder"])
    decoder["slot_beams"] = gather_beams(decoder["slot_beams"], parents)
    return {**cache, "decoder": decoder}
