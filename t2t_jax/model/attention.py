"""Multi-head scaled dot-product attention (paper section 3.2) and its masks.

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, computed per head; softmax always in float32.
With `decode=True` one step's queries attend to the keys and values kept by model/cache.py: self-attention
reads each live hypothesis's own slots (beam search never copies keys to reorder beams), encoder-decoder
attention the encoder output projected once per source (the Flax WMT example re-projects it for every beam at
every step). Attention weights are sown into the 'intermediates' collection (free unless it is mutable).

Relative position representations (Shaw et al. 2018; T2T's dot_product_relative), config.position_encoding
'relative', in self-attention only: each layer learns a^K and a^V, embeddings of the clipped distance
clip(j - i, -k, k) from query i to key j (k = config.max_relative_position), shared by all heads, and

    e_ij = q_i (k_j + a^K_ij)^T / sqrt(d_k),        z_i = sum_j softmax_j(e_ij) (v_j + a^V_ij).

Distances are taken between positions, not array indices: the `positions` of a packed row restart with each
example, and a decoding step's query is at position `step`, its keys at their slots' positions (model/cache.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

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


class RelativePositions(NamedTuple):
    """A self-attention layer's relative position embeddings and the positions whose distances select them."""

    keys: Array  # a^K [2k + 1, key_size]: row r embeds the distance r - k
    values: Array  # a^V [2k + 1, value_size]
    query_positions: Array  # [batch or 1, q_length or 1] int
    key_positions: Array  # [batch or 1, kv_length] int


def relative_embeddings(table: Array, query_positions: Array, key_positions: Array) -> Array:
    """a_ij = table[clip(pos_j - pos_i, -k, k) + k] for each query i and key j: [batch or 1, q_length, kv_length,
    size], with 2k + 1 = len(table). Distances beyond k share the embedding of +-k."""
    k = (table.shape[0] - 1) // 2
    distance = key_positions[:, None, :] - query_positions[:, :, None]  # [batch or 1, q_length, kv_length]
    return jnp.take(table, jnp.clip(distance, -k, k) + k, axis=0)


def relative_logits(query: Array, relative: RelativePositions) -> Array:
    """q_i a^K_ij^T: [batch, heads, q_length, key_size] -> [batch, heads, q_length, kv_length], every head alike."""
    key_embeddings = relative_embeddings(relative.keys, relative.query_positions, relative.key_positions)
    return jnp.einsum("bhqd,bqkd->bhqk", query, key_embeddings)


def relative_output(weights: Array, relative: RelativePositions) -> Array:
    """sum_j w_ij a^V_ij: [batch, heads, q_length, kv_length] -> [batch, heads, q_length, value_size]."""
    value_embeddings = relative_embeddings(relative.values, relative.query_positions, relative.key_positions)
    return jnp.einsum("bhqk,bqkd->bhqd", weights, value_embeddings)


def fused_attention(
    query: Array,  # [batch, heads, q_length, key_size]
    key: Array,  # [batch, heads, kv_length, key_size]
    value: Array,  # [batch, heads, kv_length, value_size]
    mask: Array | None,  # [batch, 1, q_length or 1, kv_length] bool
) -> Array:  # [batch, heads, q_length, value_size]
    """softmax(Q K^T / sqrt(d_k)) V by jax.nn.dot_product_attention: one fused kernel where the platform has one
    (cuDNN on GPUs for bfloat16/float16 and supported shapes), XLA's otherwise; the softmax in float32 there too."""
    if mask is not None:
        mask = jnp.broadcast_to(mask, (query.shape[0], 1, query.shape[2], key.shape[2]))
    swap = lambda array: array.transpose(0, 2, 1, 3)  # noqa: E731 - [batch, length, heads, size], its layout
    attended = jax.nn.dot_product_attention(swap(query), swap(key), swap(value), mask=mask)
    return swap(attended)


def chunked_attention(
    query: Array,  # [batch, heads, q_length, key_size], already scaled by 1/sqrt(key_size)
    key: Array,  # [batch, heads, kv_length, key_size]
    value: Array,  # [batch, heads, kv_length, value_size]
    mask: Array | None,  # [batch, 1, q_length or 1, kv_length] bool
    chunk: int,
    relative: RelativePositions | None = None,
) -> Array:  # [batch, heads, q_length, value_size]
    """softmax(Q K^T) V one chunk of queries at a time (a scan), each chunk recomputed in the backward pass: the
    [q_length, kv_length] logits never exist whole, so memory grows linearly with the length. Exact: each query's
    softmax sees all its keys. Softmax in float32, products in the compute dtype, as in the whole version.
    With `relative`, each chunk's relative embeddings [batch, chunk, kv_length, size] are made in the chunk."""
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
    positions = jnp.zeros((chunks, 1, chunk), jnp.int32)  # each chunk's query positions (unused without relative)
    if relative is not None:
        query_positions = jnp.broadcast_to(relative.query_positions, (relative.query_positions.shape[0], q_length))
        query_positions = jnp.pad(query_positions, ((0, 0), (0, padded - q_length)))
        positions = query_positions.reshape(-1, chunks, chunk).transpose(1, 0, 2)  # [chunks, batch or 1, chunk]

    @jax.checkpoint
    def one_chunk(chunk_inputs: tuple[Array, Array, Array]) -> Array:
        query_chunk, mask_chunk, positions_chunk = chunk_inputs  # [batch, heads, chunk, key_size],
        # [batch, 1, chunk or 1, kv_length], [batch or 1, chunk]
        logits = jnp.einsum("bhqd,bhkd->bhqk", query_chunk, key).astype(jnp.float32)
        chunk_relative = None if relative is None else relative._replace(query_positions=positions_chunk)
        if chunk_relative is not None:
            logits = logits + relative_logits(query_chunk, chunk_relative).astype(jnp.float32)
        weights = jax.nn.softmax(jnp.where(mask_chunk, logits, MASKED_LOGIT), axis=-1).astype(value.dtype)
        attended = jnp.einsum("bhqk,bhkd->bhqd", weights, value)
        if chunk_relative is not None:
            attended = attended + relative_output(weights, chunk_relative)
        return attended

    attended = jax.lax.map(one_chunk, (queries, masks, positions))  # [chunks, batch, heads, chunk, value_size]
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
    With config.position_encoding 'relative', self-attention adds relative position embeddings (module docstring).
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
        positions: Array | None = None,  # [batch, q_length] int, for relative self-attention (None: 0, 1, ...)
        prefill: bool = False,  # config.decode: this call brings a prompt of q_length tokens per item
    ) -> Array:
        cfg = self.config
        query_proj = Projection(cfg, cfg.key_size, name="query")
        key_proj = Projection(cfg, cfg.key_size, name="key")
        value_proj = Projection(cfg, cfg.value_size, name="value")
        tables = self._relative_tables() if cfg.position_encoding == "relative" and self.self_attention else None
        query = query_proj(inputs_q)  # [batch, heads, q_length, key_size]
        if cfg.decode:
            attended = self._decode_step(
                query, key_proj, value_proj, inputs_q, inputs_kv, mask, decode_index, tables, prefill
            )
        else:
            kv_inputs = inputs_q if inputs_kv is None else inputs_kv
            key, value = key_proj(kv_inputs), value_proj(kv_inputs)  # [batch, heads, kv_length, size]
            relative = None
            if tables is not None:
                positions = jnp.arange(inputs_q.shape[1])[None] if positions is None else positions
                relative = RelativePositions(*tables, query_positions=positions, key_positions=positions)
            attended = self._attend(query, key, value, mask, deterministic, relative=relative)
        kernel = self.param(
            "out", _dense_init(("heads", "kv", "embed"), (0, 1), 2),
            (cfg.num_heads, cfg.value_size, cfg.d_model), cfg.param_dtype,
        )
        batch, heads, length, value_size = attended.shape
        # as one [batch * length, heads * value_size] x [heads * value_size, d_model] product: no weight transposes
        concatenated = attended.transpose(0, 2, 1, 3).reshape(batch, length, heads * value_size)
        return concatenated @ kernel.reshape(heads * value_size, cfg.d_model).astype(cfg.dtype)

    def _relative_tables(self) -> tuple[Array, Array]:
        """This layer's a^K [2k + 1, key_size] and a^V [2k + 1, value_size], shared by all heads (Shaw et al.)."""
        cfg = self.config
        distances = 2 * cfg.max_relative_position + 1
        init = _dense_init(("relpos", "kv"), 0, 1)
        keys = self.param("relative_keys", init, (distances, cfg.key_size), cfg.param_dtype)
        values = self.param("relative_values", init, (distances, cfg.value_size), cfg.param_dtype)
        return keys.astype(cfg.dtype), values.astype(cfg.dtype)

    def _attend(
        self,
        query: Array,  # [batch, heads, q_length, key_size]
        key: Array,  # [batch, heads, kv_length, key_size], or [batch, heads, key_size, kv_length] if transposed
        value: Array,  # [batch, heads, kv_length, value_size]
        mask: Array | None,
        deterministic: bool,
        key_transposed: bool = False,
        relative: RelativePositions | None = None,
    ) -> Array:  # [batch, heads, q_length, value_size]
        cfg = self.config
        if cfg.attention_implementation == "dot_product" and not key_transposed and not self.is_mutable_collection(
                "intermediates"):
            return fused_attention(query, key, value, mask)
        query = query / jnp.sqrt(cfg.key_size).astype(query.dtype)
        if cfg.attention_chunk and not key_transposed and query.shape[2] > cfg.attention_chunk:
            return chunked_attention(query, key, value, mask, cfg.attention_chunk, relative)
        pattern = "bhqd,bhdk->bhqk" if key_transposed else "bhqd,bhkd->bhqk"
        # the product in the compute dtype (so is its gradient), the softmax in float32
        logits = jnp.einsum(pattern, query, key).astype(jnp.float32)
        if relative is not None:
            logits = logits + relative_logits(query, relative).astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, MASKED_LOGIT)
        weights = jax.nn.softmax(logits, axis=-1)  # [batch, heads, q_length, kv_length] float32
        self.sow("intermediates", "attention_weights", weights)
        if not deterministic and cfg.attention_dropout_rate > 0:
            weights = Dropout(cfg.attention_dropout_rate)(weights, deterministic=False)
        weights = weights.astype(cfg.dtype)
        attended = jnp.einsum("bhqk,bhkd->bhqd", weights, value)
        if relative is not None:
            attended = attended + relative_output(weights, relative)
        return attended

    def _decode_step(
        self,
        query: Array,  # [items * beams, heads, 1, key_size]
        key_proj: nn.Module,
        value_proj: nn.Module,
        inputs_q: Array,
        inputs_kv: Array | None,
        mask: Array,  # self: [items, 1, beams, beams * max_length]; cross: [items, 1, 1, source_length]
        decode_index: Array | None,
        tables: tuple[Array, Array] | None,  # relative self-attention's a^K, a^V
        prefill: bool,
    ) -> Array:  # [items * beams, heads, 1, value_size]; a prefill's [items, heads, P, value_size]
        """One decoding step for all beams of all items (or a prefill of P prompt tokens per item), on the keys
        and values of model/cache.py.

        Queries are grouped per item, [items, heads, beams or P, key_size], so each item's queries attend in one
        matrix product to keys stored once per item: the encoder's, or every beam's self-attention slots.
        With relative positions every step's query is at slot position `decode_index` (a prefill's at
        decode_index + 0..P-1), every key at its slot's position.
        """
        if self.self_attention:
            key, value, primed = cache.self_attention_slots(
                self, key_proj(inputs_q), value_proj(inputs_q), mask, decode_index, prefill
            )
        else:
            key, value, primed = cache.cross_attention_keys(self, key_proj, value_proj, inputs_kv)
        if not primed:  # the call that creates the cache; its output is never used
            return jnp.zeros(query.shape[:-1] + (self.config.value_size,), query.dtype)
        items, heads = key.shape[:2]
        beams = query.shape[0] // items  # a prefill: 1 (its P queries of an item are one sequence's)
        relative = None
        if tables is not None:
            # a prefill attends to beam 0's slots only, whose positions are their indices
            slot_positions = cache.slot_positions(mask.shape[3], 1 if prefill else beams)[None]  # [1, slots]
            query_at = decode_index + jnp.arange(query.shape[2])[None]  # [1, 1 or P]
            relative = RelativePositions(*tables, query_positions=query_at, key_positions=slot_positions)
        if prefill:  # [items, heads, P, key_size] already
            return self._attend(query, key, value, mask, deterministic=True, key_transposed=self.self_attention,
                                relative=relative)
        grouped = query.reshape(items, beams, heads, -1).transpose(0, 2, 1, 3)  # [items, heads, beams, key_size]
        attended = self._attend(  # [items, heads, beams, value_size]
            grouped, key, value, mask, deterministic=True, key_transposed=self.self_attention, relative=relative
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
