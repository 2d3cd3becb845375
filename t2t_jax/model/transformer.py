"""The Transformer of "Attention Is All You Need": encoder, decoder, encoder-decoder and decoder-only LM.

Shapes: batch B, source length S, target length T, d_model D, vocabulary V.
Packed examples: `*_segmentation` [B, L] numbers the examples in a row (1, 2, ...; 0 = padding) and
`*_positions` [B, L] restart at 0 for each example; attention never crosses examples and the decoder's
shifted input starts every example afresh. Positions enter as added encodings (sinusoidal or learned) or, with
position_encoding 'relative', only as distances between positions inside self-attention (model/attention.py).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from t2t_jax.model import cache
from t2t_jax.model.attention import MultiHeadAttention, attention_mask
from t2t_jax.model.config import TransformerConfig
from t2t_jax.model.layers import Dropout, Embedding, FeedForward, PositionEncoding, Residual, layer_norm

Array = jax.Array


def shift_right(targets: Array, segmentation: Array | None = None) -> Array:
    """Decoder inputs: targets moved one step right with 0 (T2T's start symbol) at the start of every example."""
    shifted = jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    if segmentation is None:
        return shifted
    same_example = segmentation == jnp.pad(segmentation, ((0, 0), (1, 0)))[:, :-1]
    return jnp.where(same_example, shifted, 0)


def default_positions(tokens: Array) -> Array:
    return jnp.broadcast_to(jnp.arange(tokens.shape[-1]), tokens.shape)


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each in a residual connection with layer norm."""

    config: TransformerConfig
    deterministic: bool

    @nn.compact
    def __call__(
        self,
        hidden: Array,  # [B, S, D]
        mask: Array,  # [B, 1, S, S]
        positions: Array | None = None,  # [B, S] (relative self-attention; None: 0, 1, ...)
    ) -> Array:
        cfg, det = self.config, self.deterministic
        residual = Residual(cfg, det, name="self_attention_residual")
        attended = MultiHeadAttention(cfg, name="self_attention")(
            residual.sublayer_input(hidden), None, mask, det, positions=positions
        )
        hidden = residual(hidden, attended)
        residual = Residual(cfg, det, name="feed_forward_residual")
        return residual(hidden, FeedForward(cfg, det, name="feed_forward")(residual.sublayer_input(hidden)))


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention (absent in a decoder-only LM), then feed-forward."""

    config: TransformerConfig
    deterministic: bool
    cross_attention: bool = True

    @nn.compact
    def __call__(
        self,
        hidden: Array,  # [B, T, D]
        encoded: Array | None,  # [B, S, D]
        self_mask: Array | None,  # [B, 1, T, T]
        cross_mask: Array | None,  # [B, 1, T, S]
        positions: Array | None = None,  # [B, T] (relative self-attention; None: 0, 1, ...)
        decode_index: Array | None = None,
        prefill: bool = False,  # config.decode: T prompt tokens per item at once (model/cache.py)
    ) -> Array:
        cfg, det = self.config, self.deterministic
        residual = Residual(cfg, det, name="self_attention_residual")
        attended = MultiHeadAttention(cfg, name="self_attention")(
            residual.sublayer_input(hidden), None, self_mask, det, decode_index, positions, prefill
        )
        hidden = residual(hidden, attended)
        if self.cross_attention:
            residual = Residual(cfg, det, name="cross_attention_residual")
            attended = MultiHeadAttention(cfg, self_attention=False, name="cross_attention")(
                residual.sublayer_input(hidden), encoded, cross_mask, det, prefill=prefill
            )
            hidden = residual(hidden, attended)
        residual = Residual(cfg, det, name="feed_forward_residual")
        return residual(hidden, FeedForward(cfg, det, name="feed_forward")(residual.sublayer_input(hidden)))


def _stack(
    layer_class: Any, fields: dict[str, Any], config: TransformerConfig, num_layers: int, hidden: Array, *args: Any
) -> Array:
    """Run `num_layers` layers: a Python loop, or `nn.scan` (one compiled body, stacked parameters) when
    config.scan_layers; each layer rematerialized in the backward pass when config.remat is set."""
    if config.remat != "none":
        policy = None if config.remat == "full" else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
        layer_class = nn.remat(layer_class, policy=policy, prevent_cse=not config.scan_layers)
    if not config.scan_layers:
        for index in range(num_layers):
            hidden = layer_class(config, **fields, name=f"layers_{index}")(hidden, *args)
        return hidden
    if config.decode:
        raise ValueError("decode=True needs per-layer parameters: use unstack_layers() and scan_layers=False")
    scanned = nn.scan(
        lambda module, carry, *xs: (module(carry, *xs), None),
        variable_axes={"params": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(args),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    hidden, _ = scanned(layer_class(config, **fields, name="layers"), hidden, *args)
    return hidden


class Encoder(nn.Module):
    """Embeddings + positional encodings + N encoder layers (+ final norm when pre-norm)."""

    config: TransformerConfig
    embedding: Embedding

    @nn.compact
    def __call__(
        self,
        inputs: Array,  # [B, S] int
        segmentation: Array | None,
        positions: Array | None,
        deterministic: bool,
    ) -> Array:  # [B, S, D]
        cfg = self.config
        positions = default_positions(inputs) if positions is None else positions
        hidden = self.embedding(inputs)
        if cfg.position_encoding != "relative":  # relative: positions only inside self-attention (T2T: pos="none")
            hidden = hidden + PositionEncoding(cfg, name="position_encoding")(positions)
        hidden = Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
        mask = attention_mask(inputs > 0, segmentation, segmentation)
        fields = {"deterministic": deterministic}
        hidden = _stack(EncoderLayer, fields, cfg, cfg.num_encoder_layers, hidden, mask, positions)
        return layer_norm(cfg, "final_norm")(hidden) if cfg.norm_placement == "pre" else hidden


class Decoder(nn.Module):
    """Shifted target embeddings + positions + N decoder layers (+ final norm) + pre-softmax projection.

    With config.decode the decoder takes one token per call [B, 1] and keeps its state in the 'cache'
    collection (model/cache.py), created by a first call with full-length targets (see `init_cache`); a call
    with `targets_positions` is a prefill of a prompt [items, P] (model/cache.py), and `items` (a decoder-only
    model's number of sequences, each with B / items beams) is read when the cache is created.
    """

    config: TransformerConfig
    embedding: Embedding
    output_embedding: Embedding | None  # tied pre-softmax projection, or None for a separate one
    cross_attention: bool = True

    @nn.compact
    def __call__(
        self,
        encoded: Array | None,  # [B, S, D]; None in decode steps and for a decoder-only LM
        inputs: Array | None,  # [B, S] source tokens, for the encoder-decoder mask
        targets: Array,  # [B, T]
        inputs_segmentation: Array | None,
        targets_segmentation: Array | None,
        targets_positions: Array | None,
        deterministic: bool,
        items: int | None = None,
    ) -> Array:  # float32 [B, T, V]
        cfg = self.config
        prefill = cfg.decode and targets_positions is not None
        if cfg.decode:
            self_mask, cross_mask, decode_index, positions = cache.step_state(
                self, inputs, targets, targets_positions, items
            )
            decoder_inputs = targets
        else:
            decoder_inputs = shift_right(targets, targets_segmentation)
            positions = default_positions(targets) if targets_positions is None else targets_positions
            self_mask = attention_mask(
                jnp.ones(targets.shape, bool), targets_segmentation, targets_segmentation, causal=True
            )
            cross_mask = None if inputs is None else attention_mask(
                inputs > 0, targets_segmentation, inputs_segmentation
            )
            decode_index = None
        hidden = self.embedding(decoder_inputs)
        if cfg.position_encoding != "relative":
            hidden = hidden + PositionEncoding(cfg, name="position_encoding")(positions)
        hidden = Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
        fields = {"deterministic": deterministic, "cross_attention": self.cross_attention}
        step_args = (decode_index, prefill) if cfg.decode else ()
        hidden = _stack(
            DecoderLayer, fields, cfg, cfg.num_decoder_layers, hidden, encoded, self_mask, cross_mask, positions,
            *step_args,
        )
        if cfg.norm_placement == "pre":
            hidden = layer_norm(cfg, "final_norm")(hidden)
        if self.output_embedding is not None:
            return self.output_embedding.attend(hidden)
        return nn.DenseGeneral(
            cfg.output_vocab_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype, use_bias=False,
            kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), ("embed", "vocab")),
            name="logits",
        )(hidden).astype(jnp.float32)


def _embeddings(config: TransformerConfig) -> tuple[Embedding, Embedding, Embedding | None]:
    """(source, target, output) embeddings by config.share_embeddings; output None means a separate matrix."""
    if config.share_embeddings == "all":
        shared = Embedding(config.vocab_size, config, name="shared_embedding")
        return shared, shared, shared
    source = Embedding(config.vocab_size, config, name="source_embedding")
    target = Embedding(config.output_vocab_size, config, name="target_embedding")
    return source, target, target if config.share_embeddings == "target" else None


def _deterministic(module: nn.Module, deterministic: bool | None) -> bool:
    """Dropout is on when the caller passes a 'dropout' RNG, unless `deterministic` says otherwise."""
    return not module.has_rng("dropout") if deterministic is None else deterministic


class Transformer(nn.Module):
    """The encoder-decoder Transformer. `apply(variables, inputs, targets)` -> float32 logits [B, T, V]."""

    config: TransformerConfig

    def setup(self) -> None:
        cfg = self.config
        source, target, output = _embeddings(cfg)
        self.encoder = Encoder(cfg, source)
        self.decoder = Decoder(cfg, target, output)

    def encode(
        self,
        inputs: Array,
        inputs_segmentation: Array | None = None,
        inputs_positions: Array | None = None,
        deterministic: bool | None = None,
    ) -> Array:  # [B, S, D]
        return self.encoder(inputs, inputs_segmentation, inputs_positions, _deterministic(self, deterministic))

    def decode(
        self,
        encoded: Array | None,
        inputs: Array | None,
        targets: Array,
        inputs_segmentation: Array | None = None,
        targets_segmentation: Array | None = None,
        targets_positions: Array | None = None,
        deterministic: bool | None = None,
    ) -> Array:  # float32 [B, T, V]
        return self.decoder(
            encoded, inputs, targets, inputs_segmentation, targets_segmentation, targets_positions,
            _deterministic(self, deterministic),
        )

    def __call__(
        self,
        inputs: Array,
        targets: Array,
        inputs_segmentation: Array | None = None,
        inputs_positions: Array | None = None,
        targets_segmentation: Array | None = None,
        targets_positions: Array | None = None,
        deterministic: bool | None = None,
    ) -> Array:  # float32 [B, T, V]
        encoded = self.encode(inputs, inputs_segmentation, inputs_positions, deterministic)
        return self.decode(
            encoded, inputs, targets, inputs_segmentation, targets_segmentation, targets_positions, deterministic
        )


class TransformerLM(nn.Module):
    """A decoder-only language model from the same layers (no encoder-decoder attention)."""

    config: TransformerConfig

    def setup(self) -> None:
        cfg = self.config
        embedding = Embedding(cfg.output_vocab_size, cfg, name="target_embedding")
        output = embedding if cfg.share_embeddings != "none" else None
        self.decoder = Decoder(cfg, embedding, output, cross_attention=False)

    def __call__(
        self,
        targets: Array,  # [B, T]
        targets_segmentation: Array | None = None,
        targets_positions: Array | None = None,
        deterministic: bool | None = None,
        items: int | None = None,  # decoding: the sequences of the cache being created (B / items beams each)
    ) -> Array:  # float32 [B, T, V]
        return self.decoder(
            None, None, targets, None, targets_segmentation, targets_positions, _deterministic(self, deterministic),
            items,
        )


def build_model(config: TransformerConfig) -> Transformer | TransformerLM:
    """The model of config.kind: the encoder-decoder `Transformer` or the decoder-only `TransformerLM`."""
    return TransformerLM(config) if config.kind == "decoder_only" else Transformer(config)


def init_variables(model: Transformer | TransformerLM, rng: Array, tokens: Array) -> Any:
    """`model.init` of either kind from example tokens [B, L] (sources and targets alike): shapes do not depend
    on lengths."""
    return model.init(rng, tokens) if isinstance(model, TransformerLM) else model.init(rng, tokens, tokens)
