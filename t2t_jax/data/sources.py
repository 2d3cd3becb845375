"""Data URIs -> (source, target) text pairs: as tf.data for training, as Python lists for eval and vocabularies.

Everything a user can get wrong (missing or broken files, unknown TFDS names, features or splits) is checked
here in Python before a tf.data pipeline is built, and reported as one UserError line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import tensorflow as tf

from t2t_jax.data import algorithmic, textfiles
from t2t_jax.data.settings import DataSettings
from t2t_jax.data.uris import AlgorithmicUri, SourceUri, TextUri, TfdsUri, TsvUri, one_sided
from t2t_jax.errors import UserError, one_line

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

_log = logging.getLogger(__name__)

TRAIN = "train"
EVAL = "eval"
_DEFAULT_SPLIT = {TRAIN: "train", EVAL: "validation"}
_PYTHON_READ_BATCH = 1024  # pairs per step when tf.data is read from Python


def train_dataset(
    uri: SourceUri, settings: DataSettings, *, seed: int, process_index: int, process_count: int
) -> tf.data.Dataset:
    """This process's share of the training pairs: (source, target) tf.string scalars, empty ones included.

    Finite (one epoch) except for algorithmic tasks, which never end.
    """
    if isinstance(uri, AlgorithmicUri):
        return algorithmic.algorithmic_dataset(
            uri.task, seed=seed, stream=algorithmic.TRAIN_STREAM, min_length=settings.algorithmic_min_length,
            max_length=settings.algorithmic_max_length, first_index=process_index, index_step=process_count)
    if isinstance(uri, TfdsUri):
        return _tfds_dataset(uri, settings, TRAIN, seed=seed, process_index=process_index,
                             process_count=process_count)
    return _file_dataset(uri).shard(process_count, process_index)


def eval_pairs(uri: SourceUri, settings: DataSettings, max_examples: int | None = None) -> list[tuple[str, str]]:
    """Every eval pair in order (empty lines kept), at most max_examples."""
    if isinstance(uri, TextUri | TsvUri):
        return list(textfiles.read_pairs(uri))[:max_examples]  # read all: a broken tail is still an error
    if isinstance(uri, AlgorithmicUri):
        count = settings.algorithmic_eval_examples
        count = count if max_examples is None else min(count, max_examples)
        dataset = algorithmic.algorithmic_dataset(
            uri.task, seed=settings.seed, stream=algorithmic.EVAL_STREAM, min_length=settings.algorithmic_min_length,
            max_length=settings.algorithmic_max_length, num_examples=count)
        return list(_python_pairs(dataset))
    dataset = _tfds_dataset(uri, settings, EVAL, seed=0, process_index=0, process_count=1)
    if max_examples is not None:
        dataset = dataset.take(max_examples)
    return list(_python_pairs(dataset))


def training_text(uri: SourceUri, settings: DataSettings) -> Iterator[tuple[str, str]]:
    """All training pairs, empty ones included, for sampling a vocabulary."""
    if isinstance(uri, TextUri | TsvUri):
        return textfiles.read_pairs(uri)
    if isinstance(uri, AlgorithmicUri):
        raise ValueError("algorithmic tasks have a fixed vocabulary; there is no text to sample")
    return _python_pairs(_tfds_dataset(uri, settings, TRAIN, seed=0, process_index=0, process_count=1))


def check_train_files(uri: SourceUri) -> None:
    """For text/tsv training files: UserError on any problem, a warning with the number of empty pairs."""
    if not isinstance(uri, TextUri | TsvUri):
        return
    stats = textfiles.check_files(uri)
    if stats.empty_pairs == stats.pairs:
        what = "non-empty line" if one_sided(uri, "") else "line pair with both sides non-empty"
        raise UserError(f"training data {describe(uri)} has no {what}")
    if stats.empty_pairs:
        _log.warning("skipping %d of %d training line pairs of %s with an empty side", stats.empty_pairs,
                     stats.pairs, describe(uri))


def _file_dataset(uri: TextUri | TsvUri) -> tf.data.Dataset:
    if isinstance(uri, TextUri) and not uri.source_path:
        return tf.data.TextLineDataset(uri.target_path).map(lambda line: (tf.constant(""), line))
    if isinstance(uri, TextUri):
        return tf.data.Dataset.zip(tf.data.TextLineDataset(uri.source_path), tf.data.TextLineDataset(uri.target_path))
    return tf.data.TextLineDataset(uri.path).map(_split_tsv_line)


def _split_tsv_line(line: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    fields = tf.concat([tf.strings.split(line, "\t", maxsplit=1), ["", ""]], 0)  # blank lines have no TAB
    return fields[0], fields[1]


def _tfds_dataset(
    uri: TfdsUri, settings: DataSettings, role: str, *, seed: int, process_index: int, process_count: int
) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(uri, settings, process_count)
    split = _tfds_split(uri, builder, role)
    if process_count > 1:
        split = tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]
    read_config = tfds.ReadConfig(try_autocache=False, shuffle_seed=seed, shuffle_reshuffle_each_iteration=True)
    dataset = builder.as_dataset(split=split, shuffle_files=role == TRAIN, read_config=read_config)
    source_lang, target_lang = settings.source_lang, settings.target_lang

    def pair(features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        return (features[source_lang] if source_lang else tf.constant("")), features[target_lang]

    return dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def prepare_tfds(uri: TfdsUri, settings: DataSettings) -> bool:
    """Downloads and prepares a TFDS source into data.tfds_data_dir unless it is prepared there already.
    True when it prepared it."""
    builder = _tfds_builder(uri, settings, process_count=1, prepare=False)
    if builder.is_prepared():
        return False
    _prepare(builder, uri, process_count=1)
    return True


def _tfds_builder(
    uri: TfdsUri, settings: DataSettings, process_count: int, prepare: bool = True
) -> tfds.core.DatasetBuilder:
    import tensorflow_datasets as tfds

    data_dir = settings.tfds_data_dir or None
    try:
        builder = tfds.builder(uri.name, data_dir=data_dir)
    except (ValueError, KeyError) as error:  # DatasetNotFoundError is a ValueError
        raise UserError(f"unknown TFDS dataset {uri.name!r}: {one_line(error)}") from None
    features = set(builder.info.features.keys())
    for field, lang in (("source_lang", settings.source_lang), ("target_lang", settings.target_lang)):
        if lang not in features and (lang or field == "target_lang"):  # source_lang '': one-sided data
            raise UserError(f"data.{field}={lang!r} is not a feature of TFDS {uri.name} "
                            f"(it has: {', '.join(sorted(features))})")
    if prepare and not builder.is_prepared():
        _prepare(builder, uri, process_count)
    return builder


def _prepare(builder: tfds.core.DatasetBuilder, uri: TfdsUri, process_count: int) -> None:
    if process_count > 1:
        raise UserError(f"TFDS {uri.name} is not prepared in {builder.data_dir} (training prepares it on every "
                        f"host first; here, run `tfds build {uri.name} --data_dir ...` on each host)")
    _log.warning("downloading and preparing TFDS %s into %s (once)", uri.name, builder.data_dir)
    try:
        builder.download_and_prepare()
    except Exception as error:  # network, disk, manual-download datasets: all the user's to fix
        raise UserError(f"could not prepare TFDS {uri.name} in {builder.data_dir}: {one_line(error)}") from None


def _tfds_split(uri: TfdsUri, builder: tfds.core.DatasetBuilder, role: str) -> str:
    split = uri.split or _DEFAULT_SPLIT[role]
    splits = builder.info.splits
    if splits:  # empty only for builders mocked in tests
        try:
            splits[split]
        except (KeyError, ValueError, AssertionError) as error:
            raise UserError(f"TFDS {uri.name} has no split {split!r} ({one_line(error)}); "
                            f"it has: {', '.join(sorted(splits.keys()))}") from None
    return split


def _python_pairs(dataset: tf.data.Dataset) -> Iterator[tuple[str, str]]:
    for sources, targets in dataset.batch(_PYTHON_READ_BATCH).as_numpy_iterator():
        for source, target in zip(sources, targets, strict=True):
            yield source.decode("utf-8", "replace"), target.decode("utf-8", "replace")


def describe(uri: SourceUri) -> str:
    if isinstance(uri, TextUri):
        return f"text:{uri.source_path},{uri.target_path}" if uri.source_path else f"text:{uri.target_path}"
    if isinstance(uri, TsvUri):
        return f"tsv:{uri.path}"
    return str(uri)
