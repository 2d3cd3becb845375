"""TransformerConfig: every hyperparameter of the paper's Table 3 and of T2T's transformer_base/big.

Presets follow the paper (Vaswani et al. 2017, Table 3): base is d_model 512, d_ff 2048, 8 heads, 6+6 layers,
P_drop 0.1; big is d_model 1024, d_ff 4096, 16 heads, P_drop 0.3. Variants are made with `.replace(...)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax.numpy as jnp

NormPlacement = Literal["post", "pre"]
Sharing = Literal["none", "target", "all"]
PositionEncoding = Literal["sinusoidal", "learned", "relative"]
AttentionImplementation = Literal["plain", "dot_product"]
Remat = Literal["none", "full", "dots"]
Kind = Literal["encoder_decoder", "decoder_only"]


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of an encoder-decoder (or decoder-only) Transformer.

    vocab_size is the source vocabulary (and the target one when target_vocab_size is None, i.e. shared).
    d_k / d_v are the per-head query-key and value sizes (None: d_model // num_heads, as in the paper).
    share_embeddings: 'none' = three separate matrices, 'target' = decoder input embedding tied to the output
    projection, 'all' = one matrix for encoder input, decoder input and output (needs a shared vocabulary).
    norm_placement: 'post' = LayerNorm(x + Sublayer(x)) as in the paper; 'pre' = x + Sublayer(LayerNorm(x)) with a
    final LayerNorm, T2T's v2 default. dropout_rate is the paper's P_drop (residuals and embedding sums);
    attention_dropout_rate and relu_dropout_rate are T2T's extra dropouts. decode=True builds the
    single-step, KV-cached variant used by `t2t_jax.decoding`. attention_chunk > 0 computes attention over
    query chunks of that size, each recomputed in the backward pass, so that no [length, length] array is held:
    memory linear in the length, the same result (model/attention.py, chunked_attention).
    position_encoding: 'sinusoidal' (paper 3.5) or 'learned' absolute positions added to the embeddings, or
    'relative': no absolute positions; every self-attention layer learns embeddings of the clipped relative
    distance j - i in [-max_relative_position, max_relative_position] for its keys and values (Shaw et al. 2018,
    T2T's transformer_relative: dot_product_relative attention, pos="none"; model/attention.py).
    kind: 'encoder_decoder' (`Transformer`) or 'decoder_only' (`TransformerLM`, a language model: the decoder
    without encoder-decoder attention; num_encoder_layers is unused).
    """

    vocab_size: int
    target_vocab_size: int | None = None
    kind: Kind = "encoder_decoder"
    d_model: int = 512
    d_ff: int = 2048
    num_heads: int = 8
    d_k: int | None = None
    d_v: int | None = None
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    relu_dropout_rate: float = 0.0
    max_length: int = 1024
    position_encoding: PositionEncoding = "sinusoidal"
    max_relative_position: int = 20  # k of position_encoding='relative' (T2T's default): distances clip to [-k, k]
    norm_placement: NormPlacement = "post"
    share_embeddings: Sharing = "all"
    scale_embeddings: bool = True
    layer_norm_epsilon: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    decode: bool = False
    scan_layers: bool = False
    remat: Remat = "none"
    attention_chunk: int = 0  # > 0: attention over query chunks of this size, memory linear in length
    # "dot_product": jax.nn.dot_product_attention (fused: cuDNN's flash attention on GPUs where it applies, XLA
    # elsewhere) for training and scoring; decoding steps and captured attention weights use the plain formula
    attention_implementation: AttentionImplementation = "plain"

    def __post_init__(self) -> None:
        if self.kind not in ("encoder_decoder", "decoder_only"):
            raise ValueError(f"kind must be encoder_decoder|decoder_only, got {self.kind!r}")
        if self.share_embeddings not in ("none", "target", "all"):
            raise ValueError(f"share_embeddings must be none|target|all, got {self.share_embeddings!r}")
        if self.norm_placement not in ("post", "pre"):
            raise ValueError(f"norm_placement must be post|pre, got {self.norm_placement!r}")
        if self.position_encoding not in ("sinusoidal", "learned", "relative"):
            raise ValueError(
                f"position_encoding must be sinusoidal|learned|relative, got {self.position_encoding!r}"
            )
        if self.position_encoding == "relative" and self.max_relative_position < 1:
            raise ValueError(f"position_encoding='relative' needs max_relative_position >= 1, "
                             f"got {self.max_relative_position}")
        if self.remat not in ("none", "full", "dots"):
            raise ValueError(f"remat must be none|full|dots, got {self.remat!r}")
        if self.share_embeddings == "all" and self.output_vocab_size != self.vocab_size:
            raise ValueError("share_embeddings='all' needs one shared vocabulary (target_vocab_size=None)")
        if (self.d_k is None or self.d_v is None) and self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.attention_implementation not in ("plain", "dot_product"):
            raise ValueError("attention_implementation must be plain|dot_product, got "
                             f"{self.attention_implementation!r}")
        if self.attention_implementation == "dot_product" and (
                self.position_encoding == "relative" or self.attention_chunk or self.attention_dropout_rate):
            raise ValueError("attention_implementation='dot_product' computes plain softmax(QK^T)V: it takes no "
                             "relative positions, attention_chunk or attention_dropout_rate")
        if self.attention_chunk < 0:
            raise ValueError(f"attention_chunk must be 0 (whole) or a positive chunk size, got {self.attention_chunk}")
        if self.attention_chunk and self.attention_dropout_rate:
            raise ValueError("attention_chunk needs attention_dropout_rate 0 (no dropout inside the chunks)")
        if self.position_encoding == "sinusoidal" and self.d_model % 2:
            raise ValueError("sinusoidal positions need an even d_model")

    @property
    def output_vocab_size(self) -> int:
        return self.vocab_size if self.target_vocab_size is None else self.target_vocab_size

    @property
    def key_size(self) -> int:
        return self.d_k if self.d_k is not None else self.d_model // self.num_heads

    @property
    def value_size(self) -> int:
        return self.d_v if self.d_v is not None else self.d_model // self.num_heads

    def replace(self, **changes: Any) -> TransformerConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def base(cls, vocab_size: int, **overrides: Any) -> TransformerConfig:
        """The paper's Transformer (base): 65M parameters at a 37k shared vocabulary."""
        return cls(vocab_size=vocab_size, **overrides)

    @classmethod
    def big(cls, vocab_size: int, **overrides: Any) -> TransformerConfig:
        """The paper's Transformer (big): 213M parameters, P_drop 0.3 (EN-DE)."""
        settings: dict[str, Any] = dict(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3)
        return cls(vocab_size=vocab_size, **{**settings, **overrides})

    @classmethod
    def tiny(cls, vocab_size: int, **overrides: Any) -> TransformerConfig:
        """A small model for tests, demos and CPU experiments."""
        settings: dict[str, Any] = dict(
            d_model=128, d_ff=512, num_heads=4, num_encoder_layers=2, num_decoder_layers=2
        )
        return cls(vocab_size=vocab_size, **{**settings, **overrides})
