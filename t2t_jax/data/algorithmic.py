"""Generated algorithmic tasks: copy, reverse, sort, addition, as (source, target) string pairs.

A sequence is one line of space-separated digits, its length uniform in [min_length, max_length]:
  copy      `3 1 4 1 5` -> `3 1 4 1 5`
  reverse   `3 1 4 1 5` -> `5 1 4 1 3`
  sort      `3 1 4 1 5` -> `1 1 3 4 5`
  addition  `1 2 + 3 4` -> `4 6`   (each operand has its own length and no leading zero)
Example i of a stream is a pure function of (seed, stream, i) through stateless TF random ops, so a dataset is
deterministic per seed and its iterator state is just a counter. Stream 0 is training, stream 1 evaluation.
"""

from __future__ import annotations

import tensorflow as tf

TRAIN_STREAM = 0
EVAL_STREAM = 1


def algorithmic_dataset(
    task: str,
    *,
    seed: int,
    stream: int,
    min_length: int,
    max_length: int,
    first_index: int = 0,
    index_step: int = 1,
    num_examples: int | None = None,
) -> tf.data.Dataset:
    """(source, target) string pairs for indices first_index, first_index + index_step, ... (forever if
    num_examples is None, else that many)."""
    if num_examples is None:
        indices = tf.data.Dataset.counter(first_index, index_step)
    else:
        indices = tf.data.Dataset.range(first_index, first_index + num_examples * index_step, index_step)
    base_key = tf.constant([seed, stream], tf.int64)
    make = _TASKS[task]

    def example(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        key = tf.random.experimental.stateless_fold_in(base_key, index)
        source_digits, target_digits = make(key, min_length, max_length)
        return _join(source_digits), _join(target_digits)

    return indices.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _digits(key: tf.Tensor, min_length: int, max_length: int) -> tf.Tensor:
    """Random digits (int64 [length], length uniform in [min_length, max_length])."""
    length_key, digits_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    length = tf.random.stateless_uniform([], length_key, min_length, max_length + 1, dtype=tf.int64)
    digits = tf.random.stateless_uniform([max_length], digits_key, 0, 10, dtype=tf.int64)
    return digits[:length]


def _number(key: tf.Tensor, min_length: int, max_length: int) -> tf.Tensor:
    """Digits of a random number, most significant first, without a leading zero."""
    first_key, rest_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    digits = _digits(rest_key, min_length, max_length)
    lead = tf.random.stateless_uniform([1], first_key, 1, 10, dtype=tf.int64)
    return tf.cond(tf.size(digits) > 1, lambda: tf.concat([lead, digits[1:]], 0), lambda: digits)


def _copy(key: tf.Tensor, min_length: int, max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    digits = _digits(key, min_length, max_length)
    return digits, digits


def _reverse(key: tf.Tensor, min_length: int, max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    digits = _digits(key, min_length, max_length)
    return digits, tf.reverse(digits, [0])


def _sort(key: tf.Tensor, min_length: int, max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    digits = _digits(key, min_length, max_length)
    return digits, tf.sort(digits)


def _addition(key: tf.Tensor, min_length: int, max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    left_key, right_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    left = _number(left_key, min_length, max_length)
    right = _number(right_key, min_length, max_length)
    plus = tf.constant([-1], tf.int64)  # joined as '+'
    return tf.concat([left, plus, right], 0), _sum_digits(left, right)


def _sum_digits(left: tf.Tensor, right: tf.Tensor) -> tf.Tensor:
    """Decimal digits of left + right (digit vectors, most significant first), any length, no overflow."""
    width = tf.maximum(tf.size(left, tf.int64), tf.size(right, tf.int64)) + 1
    column_sums = _pad_right(tf.reverse(left, [0]), width) + _pad_right(tf.reverse(right, [0]), width)  # [width]
    # A column carries out iff the nearest column at or below it whose sum is not 9 sums to 10 or more.
    positions = tf.range(width)
    candidates = (positions[None, :] <= positions[:, None]) & (column_sums[None, :] != 9)  # [width, width]
    deciding = tf.reduce_max(tf.where(candidates, positions[None, :], -1), axis=1)  # [width], -1: none
    carry_out = (deciding >= 0) & (tf.gather(column_sums, tf.maximum(deciding, 0)) >= 10)
    carry_in = tf.concat([[0], tf.cast(carry_out[:-1], tf.int64)], 0)
    sum_digits = tf.reverse((column_sums + carry_in) % 10, [0])  # most significant first, maybe leading zeros
    first_nonzero = tf.reduce_min(tf.concat([tf.where(sum_digits != 0)[:, 0], [width - 1]], 0))
    return sum_digits[first_nonzero:]


def _pad_right(digits: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    return tf.pad(digits, [[0, width - tf.size(digits, tf.int64)]])


def _join(symbols: tf.Tensor) -> tf.Tensor:
    """int64 [n] of digits (and -1 for '+') -> b'3 1 + 4'."""
    text = tf.where(symbols < 0, tf.constant("+"), tf.strings.as_string(symbols))
    return tf.strings.reduce_join(text, separator=" ")


_TASKS = {"copy": _copy, "reverse": _reverse, "sort": _sort, "addition": _addition}
