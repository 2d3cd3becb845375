"""Parsing of the data URIs in `config.data.train` / `config.data.eval`.

Syntax:
  tfds:NAME/CONFIG[:VERSION][?split=SPLIT]  a TensorFlow Datasets dataset, e.g.
                                           `tfds:wmt14_translate/de-en`, `tfds:wmt_t2t_translate/de-en?split=test`;
                                           `data.source_lang` / `data.target_lang` pick its features
                                           (source_lang '' for one-sided data such as `tfds:lm1b`, whose
                                           feature is 'text'); SPLIT is any
                                           TFDS split string (`train[:10%]`); default train for training,
                                           validation for eval.
  text:SRC_PATH,TGT_PATH                   two line-aligned UTF-8 files.
  text:PATH                                one UTF-8 file, one example per line, with no source side: a
                                           decoder-only language model's data (model.kind=decoder_only).
  tsv:PATH                                 one UTF-8 file, `source<TAB>target` per line.
  algorithmic:TASK                         generated task: copy, reverse, sort or addition.
Training may mix sources: `URI@WEIGHT;URI@WEIGHT` (WEIGHT a positive number, default 1), sampled in proportion
to the weights.
"""

from __future__ import annotations

import dataclasses
import os

from t2t_jax.errors import UserError

ALGORITHMIC_TASKS = ("copy", "reverse", "sort", "addition")
SCHEMES = ("tfds", "text", "tsv", "algorithmic")


@dataclasses.dataclass(frozen=True)
class TfdsUri:
    name: str  # NAME/CONFIG[:VERSION], as tfds.builder takes it
    split: str | None  # None: the role's default split


@dataclasses.dataclass(frozen=True)
class TextUri:
    source_path: str  # '' for one-sided data (text:PATH)
    target_path: str


@dataclasses.dataclass(frozen=True)
class TsvUri:
    path: str


@dataclasses.dataclass(frozen=True)
class AlgorithmicUri:
    task: str


SourceUri = TfdsUri | TextUri | TsvUri | AlgorithmicUri


def parse_mixture(spec: str) -> list[tuple[SourceUri, float]]:
    """`URI@WEIGHT;URI` -> [(parsed URI, weight)], weights default to 1."""
    parts = [part.strip() for part in spec.split(";") if part.strip()]
    if not parts:
        raise UserError(f"empty data URI {spec!r}")
    return [_split_weight(part) for part in parts]


def parse_uri(uri: str) -> SourceUri:
    """One URI (no weight) -> its parsed form; UserError for an unknown scheme or task."""
    scheme, colon, rest = uri.strip().partition(":")
    if not colon or scheme not in SCHEMES:
        raise UserError(f"unknown data URI {uri!r}: expected one of {', '.join(s + ':' for s in SCHEMES)}")
    rest = rest.strip()
    if scheme == "tfds":
        return _parse_tfds(uri, rest)
    if scheme == "text":
        return _parse_text(uri, rest)
    if scheme == "tsv":
        if not rest:
            raise UserError(f"data URI {uri!r} has no path: expected tsv:PATH")
        return TsvUri(_expand(rest))
    if rest not in ALGORITHMIC_TASKS:
        raise UserError(f"unknown algorithmic task {rest!r} in {uri!r}: expected one of {', '.join(ALGORITHMIC_TASKS)}")
    return AlgorithmicUri(rest)


def _split_weight(part: str) -> tuple[SourceUri, float]:
    uri, at, weight_text = part.rpartition("@")
    if not at:
        return parse_uri(part), 1.0
    try:
        weight = float(weight_text)
    except ValueError:
        return parse_uri(part), 1.0  # an '@' inside a path, not a weight
    if not weight > 0:
        raise UserError(f"mixture weight in {part!r} must be positive, got {weight_text}")
    return parse_uri(uri), weight


def _parse_tfds(uri: str, rest: str) -> TfdsUri:
    name, question, query = rest.partition("?")
    if not name:
        raise UserError(f"data URI {uri!r} has no dataset name: expected tfds:NAME/CONFIG")
    if not question:
        return TfdsUri(name, None)
    key, equals, split = query.partition("=")
    if key != "split" or not equals or not split:
        raise UserError(f"data URI {uri!r}: the only option is ?split=SPLIT, got ?{query}")
    return TfdsUri(name, split)


def _parse_text(uri: str, rest: str) -> TextUri:
    paths = [path.strip() for path in rest.split(",")]
    if len(paths) > 2 or not all(paths):
        raise UserError(f"data URI {uri!r}: expected text:SRC_PATH,TGT_PATH (two paths, one comma) or text:PATH "
                        "(one-sided)")
    if len(paths) == 1:
        return TextUri("", _expand(paths[0]))
    return TextUri(_expand(paths[0]), _expand(paths[1]))


def one_sided(uri: SourceUri, source_lang: str) -> bool:
    """Whether a source has targets only (a language model's text): text:PATH, or TFDS with no source feature."""
    if isinstance(uri, TextUri):
        return not uri.source_path
    return isinstance(uri, TfdsUri) and not source_lang


def _expand(path: str) -> str:
    return os.path.expanduser(path)
