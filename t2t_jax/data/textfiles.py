"""Reading and checking `text:` and `tsv:` files in Python, before tf.data ever sees them.

Lines split on '\\n' only, with one trailing '\\r' dropped, exactly as tf.data.TextLineDataset reads them, so a
line number here is a line number there. Every mistake a user can make in a file is a one-line UserError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import BinaryIO

from t2t_jax import storage
from t2t_jax.data.uris import TextUri, TsvUri, one_sided
from t2t_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class FileStats:
    pairs: int  # line pairs, empty ones included
    empty_pairs: int  # pairs whose source or target is empty or blank


def read_pairs(uri: TextUri | TsvUri) -> Iterator[tuple[str, str]]:
    """Yields every (source, target) line pair, empty ones included."""
    if isinstance(uri, TextUri):
        if not uri.source_path:
            return (("", line) for line in _lines(uri.target_path))
        return _text_pairs(uri.source_path, uri.target_path)
    return _tsv_pairs(uri.path)


def check_files(uri: TextUri | TsvUri) -> FileStats:
    """Reads the files once: raises UserError for any problem, else counts pairs and empty pairs."""
    pairs = empty = 0
    targets_only = one_sided(uri, source_lang="")
    for source, target in read_pairs(uri):
        pairs += 1
        empty += is_empty_pair(source, target, targets_only)
    return FileStats(pairs, empty)


def is_empty_pair(source: str, target: str, one_sided: bool = False) -> bool:
    """Whether training skips the pair: an empty side (one-sided data has only a target)."""
    return not target.strip() or (not one_sided and not source.strip())


def open_binary(path: str) -> BinaryIO:
    """Opens a local or remote (gs://...) file for reading; UserError if it is missing."""
    if not storage.is_file(path):
        raise UserError(f"data file not found: {path}")
    return storage.path(path).open("rb")


def _lines(path: str) -> Iterator[str]:
    """Decoded lines of `path`, numbered from 1 in error messages; UserError if empty or not UTF-8."""
    with open_binary(path) as f:
        number = 0
        for number, raw in enumerate(f, start=1):
            yield _decode(raw, path, number)
    if number == 0:
        raise UserError(f"data file is empty: {path}")


def _decode(raw: bytes, path: str, number: int) -> str:
    line = raw[:-1] if raw.endswith(b"\n") else raw
    line = line[:-1] if line.endswith(b"\r") else line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path} line {number} is not valid UTF-8 (byte {error.start + 1} of the line)") from None


def _text_pairs(source_path: str, target_path: str) -> Iterator[tuple[str, str]]:
    sources, targets = _lines(source_path), _lines(target_path)
    count = 0
    for source in sources:
        target = next(targets, None)
        if target is None:
            raise _count_mismatch(source_path, count + 1 + _count(sources), target_path, count)
        count += 1
        yield source, target
    rest = _count(targets)
    if rest:
        raise _count_mismatch(source_path, count, target_path, count + rest)


def _count(lines: Iterator[str]) -> int:
    return sum(1 for _ in lines)


def _count_mismatch(source_path: str, source_lines: int, target_path: str, target_lines: int) -> UserError:
    return UserError(f"source and target files differ in length: {source_path} has {source_lines} lines, "
                     f"{target_path} has {target_lines} lines")


def _tsv_pairs(path: str) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            yield "", ""
            continue
        tabs = line.count("\t")
        if tabs != 1:
            raise UserError(f"{path} line {number} has {tabs} TAB characters, expected 1 (source<TAB>target)")
        source, target = line.split("\t")
        yield source, target
