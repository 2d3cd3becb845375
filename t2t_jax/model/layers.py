"""Building blocks: token embeddings (shared, scaled by sqrt(d_model)), positional encodings, the
position-wise feed-forward network, and the residual connection with layer normalization (paper 3.1-3.5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from t2t_jax.model.config import TransformerConfig

Array = jax.Array


def sinusoidal_encoding(positions: Array, d_model: int) -> Array:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(...).  [..., length] -> [..., length, d]."""
    inverse_frequency = 1.0 / (10000.0 ** (jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model))
    angles = positions[..., None].astype(jnp.float32) * inverse_frequency  # [..., length, d_model/2]
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*positions.shape, d_model)


class Dropout(nn.Module):
    """Inverted dropout drawing 8 random bits per element (four per 32-bit random word), not 32: the mask
    costs a quarter of the random-number generation of flax.linen.Dropout. The rate is rounded to a multiple
    of 1/256 (0.1 -> 26/256 = 0.1016) and kept values are scaled by exactly 1 / (1 - rounded rate)."""

    rate: float

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool) -> Array:
        threshold = round(self.rate * 256)
        if deterministic or threshold == 0:
            return inputs
        words = jax.random.bits(self.make_rng("dropout"), (-(-inputs.size // 4),), jnp.uint32)
        random_bytes = jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[: inputs.size]
        keep = random_bytes.reshape(inputs.shape) >= threshold
        scale = jnp.asarray(256 / (256 - threshold), inputs.dtype)
        return jnp.where(keep, inputs * scale, jnp.zeros((), inputs.dtype))


def constrain(activations: Array, *axes: str) -> Array:
    """Names the axes of an activation for the sharding rules (t2t_jax.sharding), so that XLA keeps it split
    that way instead of guessing from the parameters' layout. Outside a mesh with rules (a user's own project,
    one device) it does nothing."""
    return nn.with_logical_constraint(activations, axes)


class Embedding(nn.Module):
    """A token embedding matrix [vocab, d_model] used for lookup (scaled by sqrt(d_model)) and, when shared,
    for the pre-softmax projection (paper 3.4)."""

    num_embeddings: int
    config: TransformerConfig

    def setup(self) -> None:
        cfg = self.config
        init = nn.initializers.normal(stddev=cfg.d_model**-0.5)
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(init, ("vocab", "embed")),
            (self.num_embeddings, cfg.d_model), cfg.param_dtype,
        )

    def __call__(self, ids: Array) -> Array:  # [batch, length] -> [batch, length, d_model]
        cfg = self.config
        table = constrain(self.embedding, "vocab", "act_embed")  # gathered whole along d_model for the lookup
        embedded = constrain(jnp.take(table, ids, axis=0).astype(cfg.dtype), "batch", "length", "act_embed")
        return embedded * jnp.sqrt(cfg.d_model).astype(cfg.dtype) if cfg.scale_embeddings else embedded

    def attend(self, hidden: Array) -> Array:  # [batch, length, d_model] -> float32 [batch, length, vocab]
        return constrain(output_logits(hidden, self.embedding.astype(self.config.dtype)), "batch", "length", "vocab")


@jax.custom_vjp
def output_logits(hidden: Array, table: Array) -> Array:
    """hidden [batch, length, d] x table [vocab, d]^T with float32 accumulation and float32 logits; the backward
    products run in the compute dtype (bfloat16 on accelerators) with float32 accumulation, instead of being
    promoted to float32 by the float32 cotangent."""
    return jnp.einsum("bld,vd->blv", hidden, table, preferred_element_type=jnp.float32)


def _output_logits_forward(hidden: Array, table: Array) -> tuple[Array, tuple[Array, Array]]:
    return output_logits(hidden, table), (hidden, table)


def _output_logits_backward(saved: tuple[Array, Array], cotangent: Array) -> tuple[Array, Array]:
    hidden, table = saved
    cotangent = cotangent.astype(hidden.dtype)
    d_hidden = jnp.einsum("blv,vd->bld", cotangent, table, preferred_element_type=jnp.float32)
    # as hidden^T @ cotangent, then transposed: XLA transposes the small operand, not the [tokens, vocab] one
    d_table = jnp.einsum("bld,blv->dv", hidden, cotangent, preferred_element_type=jnp.float32).T
    return d_hidden.astype(hidden.dtype), d_table.astype(table.dtype)


output_logits.defvjp(_output_logits_forward, _output_logits_backward)


class PositionEncoding(nn.Module):
    """Sinusoidal (fixed) or learned position embeddings for explicit positions [batch, length]."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, positions: Array) -> Array:  # [batch, length] -> [batch, length, d_model]
        cfg = self.config
        if cfg.position_encoding == "sinusoidal":
            return sinusoidal_encoding(positions, cfg.d_model).astype(cfg.dtype)
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=cfg.d_model**-0.5), ("length", "embed")),
            (cfg.max_length, cfg.d_model), cfg.param_dtype,
        )
        return jnp.take(table, positions, axis=0).astype(cfg.dtype)


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (paper eq. 2), with T2T's optional dropout after the ReLU."""

    config: TransformerConfig
    deterministic: bool

    @nn.compact
    def __call__(self, inputs: Array) -> Array:  # [batch, length, d_model]
        cfg = self.config

        def dense(features: int, axes: tuple[str, str], name: str) -> nn.Dense:
            return nn.Dense(
                features, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]), name=name,
            )

        hidden = nn.relu(dense(cfg.d_ff, ("embed", "mlp"), "wi")(inputs))  # [batch, length, d_ff]
        hidden = constrain(hidden, "batch", "length", "mlp")
        hidden = Dropout(cfg.relu_dropout_rate)(hidden, deterministic=self.deterministic)
        return dense(cfg.d_model, ("mlp", "embed"), "wo")(hidden)


def layer_norm(config: TransformerConfig, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=config.layer_norm_epsilon, dtype=config.dtype, param_dtype=config.param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), name=name,
    )


class Residual(nn.Module):
    """The residual connection around a sublayer, with its dropout and layer norm.

    post (paper): LayerNorm(x + Dropout(Sublayer(x))); pre (T2T v2): x + Dropout(Sublayer(LayerNorm(x))).
    Use as `residual(x, sublayer(residual.sublayer_input(x)))`.
    """

    config: TransformerConfig
    deterministic: bool

    def setup(self) -> None:
        self.norm = layer_norm(self.config)
        self.dropout = Dropout(self.config.dropout_rate)

    def sublayer_input(self, inputs: Array) -> Array:
        return self.norm(inputs) if self.config.norm_placement == "pre" else inputs

    def __call__(self, inputs: Array, sublayer_output: Array) -> Array:
        summed = inputs + self.dropout(sublayer_output, deterministic=self.deterministic)
        output = summed if self.config.norm_placement == "pre" else self.norm(summed)
        return constrain(output, "batch", "length", "act_embed")  # the residual stream: split by batch only
