"""Merging SentencePiece pieces into words, for attention maps that read as words.

A piece starting with '▁' (SentencePiece's word boundary) starts a word; so do the first piece and special
pieces such as '</s>', which stay words of their own, as does the piece after one. In a merged map, the row of a
word is the MEAN of its pieces' rows (each query piece counts equally) and the column of a word is the SUM of its
pieces' columns (the attention a query pays to the word is all it pays to its pieces), so every row still sums
to 1 and masked (zero) entries stay zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from t2t_jax.visualize.maps import AttentionMaps

WORD_START = "\u2581"
SPECIAL_PIECES = frozenset({"<pad>", "</s>", "<unk>", "<s>"})


def is_special(piece: str) -> bool:
    """The special pieces of a T2T vocabulary: '<pad>', '</s>', '<unk>' (and '<s>')."""
    return piece in SPECIAL_PIECES


def word_spans(pieces: list[str]) -> list[tuple[int, int]]:
    """[start, end) piece ranges of the words of `pieces`."""
    starts = [
        index for index, piece in enumerate(pieces)
        if index == 0 or piece.startswith(WORD_START) or is_special(piece) or is_special(pieces[index - 1])
    ]
    return list(zip(starts, starts[1:] + [len(pieces)]))


def word_labels(pieces: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """Each word's pieces joined, without the '▁' marks (a bare '▁' piece shows as itself)."""
    labels = []
    for start, end in spans:
        text = "".join(pieces[start:end]).replace(WORD_START, "")
        labels.append(text or WORD_START)
    return labels


def merge_weights(
    weights: np.ndarray,  # [..., queries, keys]
    query_spans: list[tuple[int, int]],
    key_spans: list[tuple[int, int]],
) -> np.ndarray:  # [..., query words, key words]
    """Rows averaged over each query word's pieces, columns summed over each key word's pieces."""
    rows = np.stack([weights[..., start:end, :].mean(axis=-2) for start, end in query_spans], axis=-2)
    return np.stack([rows[..., start:end].sum(axis=-1) for start, end in key_spans], axis=-1)


def merge_words(maps: AttentionMaps) -> AttentionMaps:
    """`maps` with pieces merged into words (see the module docstring for how weights combine)."""
    source_spans, target_spans = word_spans(maps.source_tokens), word_spans(maps.target_tokens)
    return dataclasses.replace(
        maps,
        source_tokens=word_labels(maps.source_tokens, source_spans),
        target_tokens=word_labels(maps.target_tokens, target_spans),
        encoder=merge_weights(maps.encoder, source_spans, source_spans),
        decoder=merge_weights(maps.decoder, target_spans, target_spans),
        cross=merge_weights(maps.cross, target_spans, source_spans),
    )
