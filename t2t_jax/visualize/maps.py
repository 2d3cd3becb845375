"""AttentionMaps: one sentence pair's attention weights of every layer and head, with the tokens they join.

Three kinds, each float32 [layers, heads, queries, keys] whose rows (queries) sum to 1:
  encoder  encoder self-attention      [layers, heads, S, S]  source tokens look at source tokens
  decoder  decoder self-attention      [layers, heads, T, T]  target positions look at earlier ones (causal)
  cross    encoder-decoder attention   [layers, heads, T, S]  target positions look at source tokens
The decoder's input is the target shifted right: the query at target position t was fed target token t-1 (the
start symbol at t = 0) and predicts target token t. Decoder rows and columns are labelled by the target token
that position predicts, so the last one is `</s>`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from t2t_jax.errors import UserError

KINDS = ("encoder", "decoder", "cross")
KIND_TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "encoder-decoder attention",
}


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """Attention weights of one (source, target) pair; see the module docstring for the layout."""

    source_tokens: list[str]  # S pieces (or words), ending in '</s>'
    target_tokens: list[str]  # T pieces (or words), ending in '</s>'
    encoder: np.ndarray  # float32 [layers, heads, S, S]
    decoder: np.ndarray  # float32 [layers, heads, T, T]
    cross: np.ndarray  # float32 [layers, heads, T, S]

    def weights(self, kind: str) -> np.ndarray:
        """[layers, heads, queries, keys] of `kind` (encoder | decoder | cross)."""
        check_kind(kind)
        return getattr(self, kind)

    def query_tokens(self, kind: str) -> list[str]:
        """Labels of the rows of `kind`: source tokens for the encoder, target tokens otherwise."""
        check_kind(kind)
        return self.source_tokens if kind == "encoder" else self.target_tokens

    def key_tokens(self, kind: str) -> list[str]:
        """Labels of the columns of `kind`: target tokens for decoder self-attention, source tokens otherwise."""
        check_kind(kind)
        return self.target_tokens if kind == "decoder" else self.source_tokens

    def num_layers(self, kind: str) -> int:
        return self.weights(kind).shape[0]

    @property
    def num_heads(self) -> int:
        return self.encoder.shape[1]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserError(f"attention kind must be one of {', '.join(KINDS)}, got {kind!r}")
