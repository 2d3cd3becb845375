"""Text pairs -> token examples: SentencePiece ids with EOS appended, in tf.data (training) and numpy (eval).

In tf.data the tokenizer runs in a tf.numpy_function over groups of lines, which also drops the pairs training
skips (an empty side, too long): per-example tf.data functions cost more than the tokenizer. A group comes out
as {'inputs': int32 [n, a], 'inputs_length': int32 [n], 'targets': int32 [n, b], 'targets_length': int32 [n]},
ids ending in EOS (id 1) and 0-padded; `unpad` turns one of its rows into an exact-length example
{'inputs': [s], 'targets': [t]}. The function is pure, so the pipeline's iterator state stays exact although
tf.data cannot serialize it (external state ignored).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from t2t_jax.data.tokenizer import Tokenizer

_log = logging.getLogger(__name__)

GROUP_SIZE = 256  # lines per numpy_function call


def encode_with_eos(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text with EOS appended."""
    return [ids + [Tokenizer.EOS_ID] for ids in tokenizer.encode_batch(texts)]


def tokenize_groups(
    pairs: tf.data.Dataset, tokenizer: Tokenizer, *, max_source_length: int, max_target_length: int,
    one_sided: bool = False, truncate_sources: bool = False,
) -> tf.data.Dataset:
    """(source, target) tf.string pairs -> non-empty groups of examples (see module docstring), in order,
    without the pairs that have an empty (or blank) side or do not fit the maximum lengths (EOS included).
    `one_sided`: targets only (a language model's text), the inputs are empty. `truncate_sources`: a source
    longer than max_source_length is cut to fit (its first tokens and EOS, as T2T's summarization problems do)
    instead of dropping the pair."""

    def encode_lines(sources: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
        target_ids = encode_with_eos(tokenizer, _decode(targets))
        if one_sided:
            source_ids = [[] for _ in target_ids]
        else:
            source_ids = encode_with_eos(tokenizer, _decode(sources))
            if truncate_sources:
                source_ids = [_cut(ids, max_source_length) for ids in source_ids]
        keep = [_is_kept(source, target, max_source_length, max_target_length, one_sided) for source, target in
                zip(source_ids, target_ids, strict=True)]
        return (*_padded(itertools.compress(source_ids, keep)), *_padded(itertools.compress(target_ids, keep)))

    def encode_batch(sources: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        encoded = tf.numpy_function(encode_lines, [sources, targets], [tf.int32] * 4, stateful=False)
        for tensor, shape in zip(encoded, ([None, None], [None], [None, None], [None]), strict=True):
            tensor.set_shape(shape)  # ids [kept, longest], lengths [kept]
        return dict(zip(("inputs", "inputs_length", "targets", "targets_length"), encoded, strict=True))

    def not_empty(group: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.size(group["inputs_length"]) > 0

    groups = pairs.batch(GROUP_SIZE).map(encode_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return groups.filter(not_empty)


def unpad(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """One row of a group -> {'inputs': [inputs_length], 'targets': [targets_length]}."""
    return {"inputs": example["inputs"][: example["inputs_length"]],
            "targets": example["targets"][: example["targets_length"]]}


def truncate(sequences: list[list[int]], max_length: int, what: str) -> list[list[int]]:
    """Cuts sequences longer than max_length to their first max_length - 1 ids plus EOS, with one warning."""
    cut = sum(len(ids) > max_length for ids in sequences)
    if cut:
        _log.warning("truncated %d of %d eval %s longer than %d tokens (EOS included)", cut, len(sequences), what,
                     max_length)
    return [_cut(ids, max_length) for ids in sequences]


def _cut(ids: list[int], max_length: int) -> list[int]:
    """ids (ending in EOS) cut to at most max_length: the first max_length - 1 and EOS."""
    return ids if len(ids) <= max_length else ids[: max_length - 1] + [Tokenizer.EOS_ID]


def _decode(lines: np.ndarray) -> list[str]:
    return [line.decode("utf-8", "replace") for line in lines]


def _is_kept(
    source: list[int], target: list[int], max_source_length: int, max_target_length: int, one_sided: bool = False
) -> bool:
    """Both sides non-empty (more than the EOS; one-sided data: the target) and within the maxima."""
    source_kept = one_sided or 1 < len(source) <= max_source_length
    return source_kept and 1 < len(target) <= max_target_length


def _padded(sequences: Iterable[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ids -> (ids [n, max(longest, 1)] 0-padded, lengths [n]), both int32. At least one column: tf.data
    crashes (a segfault) on the zero-width rows of one-sided data's empty inputs."""
    sequences = list(sequences)
    lengths = np.fromiter(map(len, sequences), np.int32, len(sequences))  # [n]
    padded = np.zeros([len(sequences), max(lengths.max(initial=0), 1)], np.int32)  # [n, longest]
    padded[np.arange(padded.shape[1]) < lengths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(sequences), np.int32, int(lengths.sum()))
    return padded, lengths
