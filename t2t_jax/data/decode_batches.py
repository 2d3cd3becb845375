"""Lines to decode, as batches of a few fixed shapes (numpy only: no TensorFlow, no Flax).

Lines are sorted by length and padded to a length bucket (multiples of 8 by default); a batch holds a power
of two of sentences whose beams fit in the token budget, and its last one shrinks to the smallest power of two
that holds what is left. So an XLA program is compiled per (batch size, bucket) pair, and `shapes()` lists
them all (a server compiles them before it opens). Used by `Translator` and by exported models alike, so both
decode the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from t2t_jax.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)
LENGTH_MULTIPLE = 8


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def power_of_two_floor(value: int) -> int:
    return 1 << (max(value, 1).bit_length() - 1)


def power_of_two_ceil(value: int) -> int:
    return 1 << (max(value, 1) - 1).bit_length()


def length_buckets(max_source_length: int) -> list[int]:
    """Multiples of 8 up to max_source_length rounded up (truncated lines are at most that long)."""
    return list(range(LENGTH_MULTIPLE, round_up(max_source_length, LENGTH_MULTIPLE) + 1, LENGTH_MULTIPLE))


def encode_sources(tokenizer: Tokenizer, texts: Sequence[str], limit: int) -> list[list[int]]:
    """EOS-terminated ids per line, truncated to `limit` tokens (with a warning); [] for an empty line."""
    ids = [tokens if text.strip() else [] for text, tokens in zip(texts, tokenizer.encode_batch(list(texts)))]
    overlong = sum(len(tokens) + 1 > limit for tokens in ids)
    if overlong:
        log.warning("%d input line(s) longer than data.max_source_length=%d tokens were truncated", overlong, limit)
    return [tokens[: limit - 1] + [Tokenizer.EOS_ID] if tokens else [] for tokens in ids]


@dataclass(frozen=True)
class BatchPlan:
    buckets: Sequence[int]  # padded lengths, ascending; the last one holds the longest line
    batch_tokens: int  # sentences x bucket x beam per batch, at most (at least one sentence)
    beam_size: int
    max_batch: int | None = None  # at most this many sentences per batch
    batch_multiple: int = 1  # batch sizes are multiples of this (the data-parallel devices)

    def bucket(self, length: int) -> int:
        return next(bucket for bucket in self.buckets if bucket >= length)

    def largest(self, length: int) -> int:
        """The largest batch at this padded length: a power of two within the budget (and max_batch)."""
        size = power_of_two_floor(max(self.batch_tokens // (length * self.beam_size), 1))
        return round_up(min(size, self.max_batch or size), self.batch_multiple)

    def fit(self, rows: int, largest: int) -> int:
        """The batch size for `rows` sentences: the smallest power of two that holds them, at most `largest`."""
        return min(round_up(power_of_two_ceil(rows), self.batch_multiple), largest)

    def shapes(self) -> list[tuple[int, int]]:
        """Every (batch, length) shape `batches` can make."""
        shapes = set()
        for length in self.buckets:
            size, largest = 1, self.largest(length)
            while True:
                shapes.add((self.fit(size, largest), length))
                if size >= largest:
                    break
                size *= 2
        return sorted(shapes)

    def batches(self, ids: list[list[int]]) -> list[tuple[list[int], np.ndarray]]:
        """(input indices, int32 batch [size, length] 0-padded) of similar lengths; empty lines skipped."""
        order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i]))
        batches, start = [], 0
        while start < len(order):
            size = self.largest(self.bucket(len(ids[order[start]])))
            while True:  # the batch's longest line sets its length: grow the length, shrink the batch until both fit
                rows = order[start:start + size]
                length = self.bucket(max(len(ids[i]) for i in rows))
                if self.largest(length) >= size:
                    break
                size = self.largest(length)
            batch = np.zeros((self.fit(len(rows), size), length), np.int32)
            for row, index in enumerate(rows):
                batch[row, : len(ids[index])] = ids[index]
            batches.append((rows, batch))
            start += len(rows)
        return batches


Hypotheses = list[list[tuple[str, float]]]  # per line: the n best (text, score), best first


def decode_lines(
    ids: list[list[int]], plan: BatchPlan, decode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    detokenize: Callable[[list[int]], str], nbest: int,
) -> Hypotheses:
    """The n best (text, score) of each line, in line order: every batch of `plan` goes through
    decode(batch [B, L]) -> (sequences [B, beam, T], scores [B, beam]), best first; an empty line gives ("", 0.0)."""
    results: Hypotheses = [[("", 0.0)] * nbest for _ in ids]
    for rows, batch in plan.batches(ids):
        sequences, scores = (np.asarray(array) for array in decode(batch))
        for row, index in enumerate(rows):
            results[index] = [(detokenize(sequences[row, k].tolist()), float(scores[row, k])) for k in range(nbest)]
    return results


def best_only(results: Hypotheses, nbest: int) -> list[str] | Hypotheses:
    """What `translate` returns: the best text per line when nbest is 1, else the n-best lists."""
    return [best[0][0] for best in results] if nbest == 1 else results
