"""The Transformer model library: pure JAX/Flax, never imports tensorflow or t2t_jax.data."""

from t2t_jax.model.attention import MultiHeadAttention, attention_mask
from t2t_jax.model.config import TransformerConfig
from t2t_jax.model.layers import Embedding, FeedForward, PositionEncoding, sinusoidal_encoding
from t2t_jax.model.transformer import (
    Decoder,
    Encoder,
    Transformer,
    TransformerLM,
    build_model,
    init_variables,
    shift_right,
)

__all__ = [
    "Decoder", "Embedding", "Encoder", "FeedForward", "MultiHeadAttention", "PositionEncoding", "Transformer",
    "TransformerConfig", "TransformerLM", "attention_mask", "build_model", "init_variables", "shift_right",
    "sinusoidal_encoding",
]
