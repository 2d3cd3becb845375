"""Multi-head scaled dot-product attention (paper section 3.2) and its masks.

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, computed per head; softmax always in float32.
With `decode=True` one step's queries attend to the keys and values kept by model/cache.py: self-attention
reads each live hypothesis's own slots (beam search never copies keys to reorder beams), encoder-decoder
attention the encoder output projected once per source (the Flax WMT example re-projects it for every beam at
every step). Attention weights are sown into the 'intermediates' collection (free unless it is mutable).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from t2t_jax.model import cache
from t2t_jax.model.config import TransformerConfig
from t2t_jax.model.layers import Dropout

Array = jax.Array
MASKED_LOGIT = -1e10  # a masked position's logit: finite, and exactly zero weight after a float32 softmax


def attention_mask(
    key_valid: Array,
    query_segments: Array | None = None,
    key_segments: Array | None = None,
    causal: bool = False,
) -> Array:
    """Boolean mask [batch, 1, query_length or 1, key_length]: True where a query may attend to a key.

    key_valid: [batch, key_length] (False at padding). Segments (packed examples) restrict attention to
    keys of the query's own example; causal forbids attending to later positions.
    """
    mask = key_valid[:, None, None, :]
    if query_segments is not None and key_segments is not None:
        mask = mask & (query_segments[:, None, :, None] == key_segments[:, None, None, :])
    if causal:
        length = mask.shape[-1]
        query_length = length if query_segments is None else query_segments.shape[-1]
        mask = mask & jnp.tril(jnp.ones((query_length, length), bool))[None, None]
    return mask


def chunked_attention(
    query: Array,  # [batch, heads, q_length, key_size], already scaled by 1/sqrt(key_size)
    key: Array,  # [batch, heads, kv_length, key_size]
    value: Array,  # [batch, heads, kv_length, value_size]
    mask: Array | None,  # [batch, 1, q_length or 1, kv_length] bool
    chunk: int,
) -> Array:  # [batch, heads, q_length, value_size]
    """softmax(Q K^T) V one chunk of queries at a time (a scan), each chunk recomputed in the backward pass: the
    [q_length, kv_length] logits never exist whole, so memory grows linearly with the length. Exact: each query's
    softmax sees all its keys. Softmax in float32, products in the compute dtype, as in the whole version."""
    batch, heads, q_length, key_size = query.shape
    chunks = -(-q_length // chunk)
    padded = chunks * chunk
    query = jnp.pad(query, ((0, 0), (0, 0), (0, padded - q_length), (0, 0)))
    queries = query.reshape(batch, heads, chunks, chunk, key_size).transpose(2, 0, 1, 3, 4)
    if mask is None:
        mask = jnp.ones((batch, 1, 1, key.shape[2]), bool)
    if mask.shape[2] == 1:  # the same keys for every query: shared by all chunks
        masks = jnp.broadcast_to(mask[None], (chunks, *mask.shape))
    else:
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, padded - q_length), (0, 0)))
        masks = mask.reshape(batch, 1, chunks, chunk, mask.shape[-1]).transpose(2, 0, 1, 3, 4)

    @jax.checkpoint
    def one_chunk(pair: tuple[Array, Array]) -> Array:
        query_chunk, mask_chunk = pair  # [batch, heads, chunk, key_size], [batch, 1, chunk or 1, kv_length]
        logits = jnp.einsum("bhqd,bhkd->bhqk", query_chunk, key).astype(jnp.float32)
        weights = jax.nn.softmax(jnp.where(mask_chunk, logits, MASKED_LOGIT), axis=-1)
        return jnp.einsum("bhqk,bhkd->bhqd", weights.astype(value.dtype), value)

    attended = jax.lax.map(one_chunk, (queries, masks))  # [chunks, batch, heads, chunk, value_size]
    attended = attended.transpose(1, 2, 0, 3, 4).reshape(batch, heads, padded, value.shape[-1])
    return attended[:, :, :q_length]


def _dense_init(names: tuple[str, ...], in_axis: int | tuple[int, ...], out_axis: int | tuple[int, ...]) -> Any:
    # T2T's uniform_unit_scaling with gain 1.0 == Glorot uniform over the flattened (fan_in, fan_out).
    init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=in_axis, out_axis=out_axis)
    return nn.with_logical_partitioning(init, names)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O with head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    No biases on the projections, as in T2T. `inputs_kv=None` means self-attention. Heads are kept in the
    [batch, heads, length, size] layout, where each head's products are plain batched matrix products.
    """

    config: TransformerConfig
    self_attention: bool = True

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,  # [batch, q_length, d_model]
        inputs_kv: Array | None,  # [batch, kv_length, d_model] or None for self-attention
        mask: Array | None,  # [batch, 1, q_length or 1, kv_length] bool
        deterministic: bool,
        decode_index: Array | None = None,  # scalar step index when config.decode
    ) -> Array:
        cfg = self.config
        query_proj = Projection(cfg, cfg.key_size, name="query")
        key_proj = Projection(cfg, cfg.key_size, name="key")
        value_proj = Projection(cfg, cfg.value_size, name="value")
        query = query_proj(inputs_q)  # [batch, heads, q_length, key_size]
        if cfg.decode:
            attended = self._decode_step(query, key_proj, value_proj, inputs_q, inputs_kv, mask, decode_index)
        else:
            kv_inputs = inputs_q if inputs_kv is None else inputs_kv
            key, value = key_proj(kv_inputs), value_proj(kv_inputs)  # [batch, heads, kv_length, size]
            attended = self._attend(query, key, value, mask, deterministic)  # [batch, heads, q_length, v_size]
        kernel = self.param(
            "out", _dense_init(("heads", "kv", "embed"), (0, 1), 2),
            (cfg.num_heads, cfg.value_size, cfg.d_model), cfg.param_dtype,
        )
        batch, heads, length, value_size = attended.shape
        # as one [batch * length, heads * value_size] x [heads * value_size, d_model] product: no weight transposes
        concatenated = attended.transpose(0, 2, 1, 3).reshape(batch, length, heads * value_size)
        return concatenated @ kernel.reshape(heads * value_size, cfg.d_model).astype(cfg.dtype)

    def _attend(
        self,
        query: Array,  # [batch, heads, q_length, key_size]
        key: Array,  # [batch, heads, kv_length, key_size], or [batch, heads, key_size, kv_length] if transposed
        value: Array,  # [batch, heads, kv_length, value_size]
        mask: Array | None,
        deterministic: bool,
        key_transposed: bool = False,
    ) -> Array:  # [batch, heads, q_length, value_size]
        cfg = self.config
        query = query / jnp.sqrt(cfg.key_size).astype(query.dtype)
        if cfg.attention_chunk and not key_transposed and query.shape[2] > cfg.attention_chunk:
            return chunked_attention(query, key, value, mask, cfg.attention_chunk)
        pattern = "bhqd,bhdk->bhqk" if key_transposed else "bhqd,bhkd->bhqk"
        # the product in the compute dtype (so is its gradient), the softmax in float32
        logits = jnp.einsum(pattern, query, key).astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, MASKED_LOGIT)
        weights = jax.nn.softmax(logits, axis=-1)  # [batch, heads, q_length, kv_length] float32
        self.sow("intermediates", "attention_weights", weights)
        if not deterministic and cfg.attention_dropout_rate > 0:
            weights = Dropout(cfg.attention_dropout_rate)(weights, deterministic=False)
        return jnp.einsum("bhqk,bhkd->bhqd", weights.astype(cfg.dtype), value)

    def _decode_step(
        self,
        query: Array,  # [items * beams, heads, 1, key_size]
        key_proj: nn.Module,
        value_proj: nn.Module,
        inputs_q: Array,
        inputs_kv: Array | None,
        mask: Array,  # self: [items, 1, beams, beams * max_length]; cross: [items, 1, 1, source_length]
        decode_index: Array | None,
    ) -> Array:  # [items * beams, heads, 1, value_size]
        """One decoding step for all beams of all items, on the keys and values of model/cache.py.

        Queries are grouped per item, [items, heads, beams, key_size], so each item's beams attend in one
        matrix product to keys stored once per item: the encoder's, or every beam's self-attention slots.
        """
        if self.self_attention:
            key, value, primed = cache.self_attention_slots(
                self, key_proj(inputs_q), value_proj(inputs_q), mask, decode_index
            )
        else:
            key, value, primed = cache.cross_attention_keys(self, key_proj, value_proj, inputs_kv)
        if not primed:  # the call that creates the cache; its output is never used
            return jnp.zeros(query.shape[:-1] + (self.config.value_size,), query.dtype)
        items, heads = key.shape[:2]
        beams = query.shape[0] // items
        grouped = query.reshape(items, beams, heads, -1).transpose(0, 2, 1, 3)  # [items, heads, beams, key_size]
        attended = self._attend(  # [items, heads, beams, value_size]
            grouped, key, value, mask, deterministic=True, key_transposed=self.self_attention
        )
        return attended.transpose(0, 2, 1, 3).reshape(items * beams, heads, 1, -1)


class Projection(nn.Module):
    """x W for all heads at once: [batch, length, d_model] -> [batch, heads, length, size]."""

    config: TransformerConfig
    size: int

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        cfg = self.config
        kernel = self.param(
            "kernel", _dense_init(("embed", "heads", "kv"), 0, (1, 2)),
            (cfg.d_model, cfg.num_heads, self.size), cfg.param_dtype,
        )
        projected = inputs @ kernel.reshape(cfg.d_model, -1).astype(cfg.dtype)  # [batch, length, heads * size]
        batch, length, _ = inputs.shape
        return projected.reshape(batch, length, cfg.num_heads, self.size).transpose(0, 2, 1, 3)
