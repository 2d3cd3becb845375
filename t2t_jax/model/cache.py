"""The decoding cache: what cached decoding keeps between steps, where, and how beam search reorders it.

The cache is Flax's 'cache' collection of the decoder, created by a first call of the decoding model with
full-length placeholder targets (`t2t_jax.model.inference.init_cache`) and updated by every step:

    decoder/                       the decoder's step state (`step_state`)
        index           []                          the step being decoded
        source_valid    [items, source_length]      False at source padding
        slot_beams      [items * beams, max_length] for each live hypothesis and position, the beam slot
                                                    whose key/value holds that position
    decoder/layers_N/self_attention/    (`self_attention_slots`)
        cached_key      [items, heads, key_size, beams * max_length]   transposed: Q K is a plain product
        cached_value    [items, heads, beams * max_length, value_size]
    decoder/layers_N/cross_attention/   (`cross_attention_keys`)
        cached_key, cached_value   [items, heads, source_length, size]   projected once per source

Slot s = b * max_length + t holds beam b's position t, written once, at step t, by whichever hypothesis is in
beam b then. A hypothesis's history is a path through the slots, named by its row of slot_beams; reordering
beams (`reorder_cache`) gathers slot_beams only, never the keys and values. Each item's beams attend to keys stored
once per item (the encoder's, or all its beams' slots) in one matrix product per item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from t2t_jax.decoding.beam_search import gather_beams

Array = jax.Array
Cache = Any
COLLECTION = "cache"


def step_state(
    module: nn.Module, inputs: Array | None, targets: Array
) -> tuple[Array, Array, Array]:
    """The decoder's per-step masks, from the cache of `module` (the decoder):
    (self_mask [items, 1, beams, beams * max_length], cross_mask [items, 1, 1, source_length], step []).

    `targets` is the previous token of every hypothesis [items * beams, 1], or in the call that creates the
    cache a placeholder [items * beams, max_length]; `inputs` [items, source_length] is read only then (None for a
    decoder-only model). Each call after the first advances the step and records every beam's own slot.
    """
    rows, length = targets.shape
    primed = module.has_variable(COLLECTION, "index")
    source_valid = module.variable(
        COLLECTION, "source_valid", lambda: jnp.ones((rows, 1), bool) if inputs is None else inputs > 0
    )
    index = module.variable(COLLECTION, "index", lambda: jnp.zeros((), jnp.int32))
    slot_beams = module.variable(COLLECTION, "slot_beams", jnp.zeros, (rows, length), jnp.int32)
    items, max_length = source_valid.value.shape[0], slot_beams.value.shape[1]
    beams, step = rows // items, index.value
    if primed:
        own_slot = jnp.arange(rows, dtype=jnp.int32) % beams
        slot_beams.value = jax.lax.dynamic_update_index_in_dim(slot_beams.value, own_slot, step, axis=1)
        index.value = step + 1
    history = slot_beams.value.reshape(items, beams, 1, max_length)
    self_mask = (history == jnp.arange(beams)[:, None]) & (jnp.arange(max_length) <= step)
    self_mask = self_mask.reshape(items, 1, beams, beams * max_length)  # query beam -> (slot, position)
    cross_mask = source_valid.value[:, None, None, :]
    return self_mask, cross_mask, step


def slot_positions(slots: int, beams: int) -> Array:
    """The target position of every self-attention slot [slots]: slot s = b * max_length + t holds position t."""
    return jnp.arange(slots, dtype=jnp.int32) % (slots // beams)


def self_attention_slots(
    module: nn.Module,
    key: Array,  # [items * beams, heads, 1, key_size]: this step's
    value: Array,  # [items * beams, heads, 1, value_size]
    mask: Array,  # [items, 1, beams, beams * max_length]
    step: Array | None,
) -> tuple[Array, Array, bool]:
    """Writes this step's key and value into each beam's slot at `step`; returns every slot's
    (keys [items, heads, key_size, slots], values [items, heads, slots, value_size], primed). `primed` is False
    in the call that creates the cache, whose attention output is never used."""
    items, heads, beams = mask.shape[0], key.shape[1], mask.shape[2]
    slots = mask.shape[3]
    primed = module.has_variable(COLLECTION, "cached_key")
    cached_key = module.variable(COLLECTION, "cached_key", jnp.zeros, (items, heads, key.shape[-1], slots), key.dtype)
    cached_value = module.variable(
        COLLECTION, "cached_value", jnp.zeros, (items, heads, slots, value.shape[-1]), value.dtype
    )
    if primed:
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
