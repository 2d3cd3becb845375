"""Length bucketing: examples of similar length batched together, padded to a few fixed bucket lengths.

Bucket lengths grow geometrically as in T2T (from 8 by a factor of 1.1, at least +1, up to the maximum length),
so padding stays low while XLA compiles one shape per bucket in use. A bucket takes an example whose longer side
(source or target, EOS included) fits its length; both sides are padded to that length. Its batch size is the
token budget divided by the bucket length, rounded down to a multiple of `batch_multiple`, or a fixed number of
sentences.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from t2t_jax.errors import UserError

MIN_BUCKET_LENGTH = 8
BUCKET_GROWTH = 1.1


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    lengths: tuple[int, ...]  # padded length of each bucket, increasing; the last is the maximum length
    batch_sizes: tuple[int, ...]  # sentences per batch of each bucket


def bucket_lengths(max_length: int, growth: float = BUCKET_GROWTH) -> tuple[int, ...]:
    """8, 9, 10, ..., 20, 22, 24, 26, ... (x growth each, at least +1), ending with max_length."""
    lengths = []
    length = MIN_BUCKET_LENGTH
    while length < max_length:
        lengths.append(length)
        length = max(length + 1, int(length * growth))
    return (*lengths, max_length)


def plan_buckets(
    max_length: int, *, batch_tokens: int, batch_size: int, batch_multiple: int, growth: float = BUCKET_GROWTH
) -> BucketPlan:
    """Batch sizes per bucket: `batch_size` sentences if > 0, else `batch_tokens` // length (padded positions of
    the longer side), rounded down to a multiple of batch_multiple. UserError if a bucket gets no sentence."""
    lengths = bucket_lengths(max_length, growth)
    if batch_size > 0:
        if batch_size % batch_multiple:
            raise UserError(f"data.batch_size={batch_size} is not a multiple of {batch_multiple} (the local "
                            "device count): every device needs the same number of sentences")
        return BucketPlan(lengths, (batch_size,) * len(lengths))
    sizes = tuple(batch_tokens // length // batch_multiple * batch_multiple for length in lengths)
    if sizes[-1] == 0:
        raise UserError(f"data.batch_tokens={batch_tokens} is too small for sequences of {max_length} tokens on "
                        f"{batch_multiple} local devices: use at least {max_length * batch_multiple}, or lower "
                        "data.max_source_length / data.max_target_length")
    return BucketPlan(lengths, sizes)


def bucket_batches(examples: tf.data.Dataset, plan: BucketPlan) -> tf.data.Dataset:
    """Examples {'inputs': [s], 'targets': [t]} -> batches {'inputs': [B, L], 'targets': [B, L]}, 0-padded,
    with (B, L) one of the plan's (batch_size, length) pairs. Examples longer than the last bucket must be
    filtered out before."""
    lengths = tf.constant(plan.lengths, tf.int64)
    batch_sizes = tf.constant(plan.batch_sizes, tf.int64)

    def bucket_of(example: dict[str, tf.Tensor]) -> tf.Tensor:
        longer = tf.maximum(tf.size(example["inputs"], tf.int64), tf.size(example["targets"], tf.int64))
        return tf.searchsorted(lengths, longer[None], side="left", out_type=tf.int64)[0]

    def batch_bucket(bucket: tf.Tensor, window: tf.data.Dataset) -> tf.data.Dataset:
        shape = lengths[bucket][None]  # [1]: the padded length
        return window.padded_batch(batch_sizes[bucket], padded_shapes={"inputs": shape, "targets": shape},
                                   drop_remainder=True)

    return examples.group_by_window(bucket_of, batch_bucket, window_size_func=lambda bucket: batch_sizes[bucket])
