"""A smoothed bigram language model: the baseline a trained language model must beat on the same tokens.

Interpolated Kneser-Ney (absolute discount d, Chen & Goodman 1998) over token ids, with each sequence starting
after id 0 (the decoder's start) and ending in EOS, as the Transformer LM sees it:

    P(w | v) = max(c(v, w) - d, 0) / c(v) + d * N1+(v .) / c(v) * P_cont(w)
    P_cont(w) = (N1+(. w) + 1) / (N1+(. .) + V)        (add-one on continuation counts: no zero probability)

and P(w | v) = P_cont(w) after a token never seen in training. Written by hand (numpy): NLTK's KneserNey model
is far too slow for vocabularies of thousands of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse


class KneserNeyBigram:
    """An interpolated Kneser-Ney bigram model over token ids (module docstring)."""

    def __init__(self, sequences: Iterable[Sequence[int]], vocab_size: int, discount: float = 0.75) -> None:
        """Counts the bigrams of `sequences` (token ids ending in EOS, without the start id 0)."""
        previous, following = _bigrams(sequences)
        ones = np.ones(len(previous))
        counts = sparse.coo_matrix((ones, (previous, following)), shape=(vocab_size, vocab_size)).tocsr()
        counts.sum_duplicates()
        self.counts, self.discount, self.vocab_size = counts, discount, vocab_size
        self.context_counts = np.asarray(counts.sum(axis=1)).ravel()  # c(v)  [V]
        self.followers = np.diff(counts.indptr)  # N1+(v .)  [V]
        preceders = np.bincount(counts.indices, minlength=vocab_size)  # N1+(. w)  [V]
        self.continuation = (preceders + 1) / (counts.nnz + vocab_size)  # P_cont(w)  [V]

    def log_probs(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """log P(following | previous) for arrays of token ids of one shape."""
        pair_counts = np.asarray(self.counts[previous, following]).ravel().reshape(previous.shape)
        context = self.context_counts[previous]
        seen = context > 0
        safe = np.where(seen, context, 1.0)
        discounted = np.maximum(pair_counts - self.discount, 0.0) / safe
        backoff = self.discount * self.followers[previous] / safe
        probability = np.where(seen, discounted + backoff * self.continuation[following], self.continuation[following])
        return np.log(probability)

    def nll(self, sequences: Iterable[Sequence[int]]) -> tuple[float, int]:
        """The summed negative log-likelihood (nats) of `sequences` and their token count (EOS included)."""
        previous, following = _bigrams(sequences)
        return float(-self.log_probs(previous, following).sum()), len(following)

    def perplexity(self, sequences: Iterable[Sequence[int]]) -> float:
        total, tokens = self.nll(sequences)
        return math.exp(total / max(tokens, 1))


def _bigrams(sequences: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(previous, following) id pairs of every token of every sequence, the first one preceded by 0."""
    previous, following = [], []
    for ids in sequences:
        previous.extend([0, *ids[:-1]])
        following.extend(ids)
    return np.asarray(previous, np.int64), np.asarray(following, np.int64)
