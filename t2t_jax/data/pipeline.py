"""The data API the trainer calls: vocabulary, the endless training iterator, eval batches and eval text.

Training: text pairs (sharded per host) -> shuffle (seeded) -> tokenize + EOS, drop pairs with an empty side or
too long -> repeat -> [mix sources by weight] -> length buckets with a token budget | fixed sentences per batch |
packed rows -> prefetch -> numpy. Deterministic for a seed; `TrainIterator.save/restore` keep its exact position
(tf.data iterator checkpoint: shuffle buffers, open buckets and packed rows included).
Eval: the whole eval set in order, nothing dropped, overlong lines truncated (with a warning), fixed shapes.

Batches are dicts of int32 numpy arrays:
  'inputs' [B, S], 'targets' [B, T]: ids ending in EOS (1), 0-padded;
  with packing also 'inputs_segmentation', 'inputs_position', 'targets_segmentation', 'targets_position'
  [B, L] (segment 1, 2, ... per example in a row, 0 = padding; positions restart at 0 per example).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from t2t_jax.data import batching, examples, packing, sources
from t2t_jax.data.settings import DataSettings
from t2t_jax.data.tokenizer import Tokenizer
from t2t_jax.data.uris import AlgorithmicUri, SourceUri, TfdsUri, one_sided, parse_mixture
from t2t_jax.data.vocabulary import build_vocabulary
from t2t_jax.errors import UserError

__all__ = ["TrainIterator", "build_vocabulary", "check_sides", "eval_batches", "eval_pairs",
           "prepare_tfds_sources", "train_iterator"]

Batch = dict[str, np.ndarray]
_CHECKPOINT_PREFIX = "data_iterator"
_EVAL_LENGTH_MULTIPLE = 8


def _keep_tensorflow_off_accelerators() -> None:
    """JAX owns the GPUs; a GPU build of tensorflow would otherwise reserve their memory."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # tensorflow already initialized its devices elsewhere: nothing left to do here
        pass


_keep_tensorflow_off_accelerators()


class TrainIterator:
    """Endless numpy training batches whose position can be saved and restored exactly."""

    def __init__(self, batches: tf.data.Dataset, settings: DataSettings) -> None:
        self._iterator = iter(batches)
        self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
        self._settings = settings

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> Batch:
        try:
            batch = next(self._iterator)
        except StopIteration:
            raise UserError(_ran_out_message(self._settings)) from None
        return {name: value.numpy() for name, value in batch.items()}

    def save(self, directory: str) -> None:
        """Writes this iterator's position (one process's) under `directory`."""
        tf.io.gfile.makedirs(directory)
        self._checkpoint.write(os.path.join(directory, _CHECKPOINT_PREFIX))

    def restore(self, directory: str) -> None:
        """Moves this iterator to the position saved in `directory` by `save`."""
        prefix = os.path.join(directory, _CHECKPOINT_PREFIX)
        if not tf.io.gfile.exists(prefix + ".index"):
            raise UserError(f"no saved data-iterator position in {directory}")
        try:
            self._checkpoint.read(prefix).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError):
            raise UserError(f"the data-iterator position in {directory} does not fit this data pipeline: "
                            "were data settings changed since it was saved?") from None


def train_iterator(
    data_config: object,
    tokenizer: Tokenizer,
    *,
    batch_multiple: int = 1,
    devices: int = 1,
    seed: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> TrainIterator:
    """The endless training batches of this process (see module docstring). data.batch_tokens is per device
    (T2T's meaning): a batch holds about data.batch_tokens x `devices` (the devices this process feeds) padded
    tokens per side. `batch_multiple` (usually the local batch shards) divides every batch size; `seed` defaults
    to data.seed; process index and count default to JAX's."""
    settings = DataSettings.from_config(data_config)
    settings = dataclasses.replace(settings, batch_tokens=settings.batch_tokens * devices)
    seed = settings.seed if seed is None else seed
    process_index, process_count = _process(process_index, process_count)
    mixture = parse_mixture(settings.require_train())
    batch = _batcher(settings, batch_multiple)
    parts = [_train_examples(uri, settings, tokenizer, seed + i, process_index, process_count)
             for i, (uri, _) in enumerate(mixture)]
    if len(parts) == 1:
        mixed = parts[0]
    else:
        mixed = tf.data.Dataset.sample_from_datasets(parts, [weight for _, weight in mixture], seed=seed)
    batches = batch(mixed).prefetch(tf.data.AUTOTUNE)
    return TrainIterator(batches.with_options(_options()), settings)


def eval_pairs(data_config: object, max_examples: int | None = None) -> list[tuple[str, str]]:
    """Raw (source, target) strings of the whole eval set in order (not sharded), e.g. for BLEU."""
    settings = DataSettings.from_config(data_config)
    return sources.eval_pairs(_eval_uri(settings), settings, max_examples)


def eval_batches(
    data_config: object,
    tokenizer: Tokenizer,
    *,
    batch_size: int,
    max_examples: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[Batch]:
    """One pass over this process's share of the eval set (examples process_index, +process_count, ...).

    Every line is kept (empty ones too); overlong ones are truncated with a warning. All batches have one shape,
    [batch_size, S] and [batch_size, T] with S, T the longest eval source / target rounded up to a multiple of 8
    (at most the configured maxima); the last batch is filled with all-zero rows ("no example"). Every process
    yields the same number of batches.
    """
    settings = DataSettings.from_config(data_config)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    process_index, process_count = _process(process_index, process_count)
    pairs = sources.eval_pairs(_eval_uri(settings), settings, max_examples)
    inputs = examples.truncate(examples.encode_with_eos(tokenizer, [s for s, _ in pairs]),
                               settings.max_source_length, "sources")
    targets = examples.truncate(examples.encode_with_eos(tokenizer, [t for _, t in pairs]),
                                settings.max_target_length, "targets")
    source_width = _eval_width(inputs, settings.max_source_length)
    target_width = _eval_width(targets, settings.max_target_length)
    num_batches = math.ceil(math.ceil(len(pairs) / process_count) / batch_size)
    mine = slice(process_index, None, process_count)
    return _eval_batch_iterator(inputs[mine], targets[mine], num_batches, batch_size, source_width, target_width)


def _train_examples(
    uri: SourceUri, settings: DataSettings, tokenizer: Tokenizer, seed: int, process_index: int, process_count: int
) -> tf.data.Dataset:
    """One source's endless, shuffled stream of padded examples (rows of examples.tokenize_groups) that fit the
    maximum lengths."""
    sources.check_train_files(uri)
    pairs = sources.train_dataset(uri, settings, seed=seed, process_index=process_index, process_count=process_count)
    generated = isinstance(uri, AlgorithmicUri)  # i.i.d. and endless already
    if not generated:
        pairs = pairs.shuffle(settings.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    max_source, max_target = _max_lengths(settings)
    groups = examples.tokenize_groups(pairs, tokenizer, max_source_length=max_source, max_target_length=max_target,
                                      one_sided=one_sided(uri, settings.source_lang),
                                      truncate_sources=settings.truncate_sources)
    return (groups if generated else groups.repeat()).unbatch()  # an epoch with no example ends the repeat


def _batcher(settings: DataSettings, batch_multiple: int) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
    """Checks the batch settings now (UserError) and returns the function that batches padded examples."""
    if batch_multiple <= 0:
        raise ValueError(f"batch_multiple must be positive, got {batch_multiple}")
    if settings.packing:
        rows = _packed_rows(settings, batch_multiple)

        def pack(padded: tf.data.Dataset) -> tf.data.Dataset:
            groups = padded.padded_batch(examples.GROUP_SIZE)
            return packing.pack_examples(groups, settings.pack_length).batch(rows, drop_remainder=True)

        return pack
    plan = batching.plan_buckets(max(_max_lengths(settings)), batch_tokens=settings.batch_tokens,
                                 batch_size=settings.batch_size, batch_multiple=batch_multiple)

    def bucket(padded: tf.data.Dataset) -> tf.data.Dataset:
        return batching.bucket_batches(padded.map(examples.unpad), plan)

    return bucket


def _packed_rows(settings: DataSettings, batch_multiple: int) -> int:
    if settings.batch_size > 0:
        if settings.batch_size % batch_multiple:
            raise UserError(f"data.batch_size={settings.batch_size} is not a multiple of {batch_multiple} (the "
                            "local device count)")
        return settings.batch_size
    rows = settings.batch_tokens // settings.pack_length // batch_multiple * batch_multiple
    if rows == 0:
        raise UserError(f"data.batch_tokens={settings.batch_tokens} is less than data.pack_length="
                        f"{settings.pack_length} x {batch_multiple} local devices: no packed row fits")
    return rows


def _max_lengths(settings: DataSettings) -> tuple[int, int]:
    """Longest source / target (EOS included) a training example may have."""
    if settings.packing:
        return (min(settings.max_source_length, settings.pack_length),
                min(settings.max_target_length, settings.pack_length))
    return settings.max_source_length, settings.max_target_length


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # The only external state is the pure tokenizer function (examples.py): ignoring it keeps resume exact.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return options


def _ran_out_message(settings: DataSettings) -> str:
    max_source, max_target = _max_lengths(settings)
    return (f"the training data {settings.train!r} ran out: no example has at most {max_source} source and "
            f"{max_target} target tokens (EOS included); raise data.max_source_length / data.max_target_length"
            + (" / data.pack_length" if settings.packing else ""))


def check_sides(data_config: object, decoder_only: bool) -> None:
    """UserError unless every source of data.train and data.eval has the sides the model reads: one-sided text
    (text:PATH, TFDS with data.source_lang='') for a decoder-only model, pairs for an encoder-decoder."""
    settings = DataSettings.from_config(data_config)
    uris = [uri for uri, _ in parse_mixture(settings.require_train())]
    uris += [_eval_uri(settings)] if settings.eval.strip() else []
    for uri in uris:
        if isinstance(uri, AlgorithmicUri) and not decoder_only:
            continue
        if decoder_only and not one_sided(uri, settings.source_lang):
            raise UserError(f"model.kind=decoder_only trains on one-sided data (text:PATH, or TFDS with "
                            f"data.source_lang=''): {sources.describe(uri)} has a source side")
        if not decoder_only and one_sided(uri, settings.source_lang):
            raise UserError(f"{sources.describe(uri)} has no source side: a translation model needs pairs "
                            "(text:SRC,TGT, tsv:, TFDS with data.source_lang); a language model takes "
                            "model.kind=decoder_only")


def prepare_tfds_sources(data_config: object) -> list[str]:
    """Prepares (downloads and converts) every tfds: source of data.train and data.eval that is not prepared in
    data.tfds_data_dir yet, on this host. Returns the names it prepared."""
    settings = DataSettings.from_config(data_config)
    uris = [uri for uri, _ in parse_mixture(settings.require_train())]
    if settings.eval.strip():
        uris.append(_eval_uri(settings))
    names = dict.fromkeys(uri.name for uri in uris if isinstance(uri, TfdsUri))
    return [name for name in names if sources.prepare_tfds(TfdsUri(name, None), settings)]


def _eval_uri(settings: DataSettings) -> SourceUri:
    mixture = parse_mixture(settings.require_eval())
    if len(mixture) > 1:
        raise UserError(f"data.eval={settings.eval!r} names {len(mixture)} sources; eval takes one")
    return mixture[0][0]


def _eval_width(sequences: list[list[int]], max_length: int) -> int:
    longest = max((len(ids) for ids in sequences), default=1)
    return min(max_length, -(-longest // _EVAL_LENGTH_MULTIPLE) * _EVAL_LENGTH_MULTIPLE)


def _eval_batch_iterator(
    inputs: list[list[int]], targets: list[list[int]], num_batches: int, batch_size: int, source_width: int,
    target_width: int,
) -> Iterator[Batch]:
    for start in range(0, num_batches * batch_size, batch_size):
        yield {"inputs": _pad_rows(inputs[start:start + batch_size], batch_size, source_width),
               "targets": _pad_rows(targets[start:start + batch_size], batch_size, target_width)}


def _pad_rows(sequences: list[list[int]], rows: int, width: int) -> np.ndarray:
    padded = np.zeros([rows, width], np.int32)
    for row, ids in enumerate(sequences):
        padded[row, : len(ids)] = ids
    return padded


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    return process_index, process_count
