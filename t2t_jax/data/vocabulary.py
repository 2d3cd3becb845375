"""The run's vocabulary, `WORKDIR/vocab.model`: reused if present, else copied, fixed, or trained.

Order of choice: an existing `WORKDIR/vocab.model` (resume, decode); `data.vocab_path` (a user's model, copied in);
the fixed algorithmic vocabulary when every training source is `algorithmic:`; otherwise a SentencePiece model
trained on a seeded random sample of `data.vocab_sample_lines` training lines (source and target sides).
In multi-host runs process 0 writes the file and the other processes wait for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator

import numpy as np

from t2t_jax import storage
from t2t_jax.data import sources
from t2t_jax.data.settings import DataSettings
from t2t_jax.data.tokenizer import (
    ALGORITHMIC_SYMBOLS,
    VOCAB_FILE,
    Tokenizer,
    train_tokenizer,
    write_algorithmic_vocabulary,
)
from t2t_jax.data.uris import AlgorithmicUri, SourceUri, parse_mixture
from t2t_jax.errors import UserError

_log = logging.getLogger(__name__)

_ALGORITHMIC_VOCAB_SIZE = 3 + len(ALGORITHMIC_SYMBOLS)
_POLL_SECONDS = 2.0


def build_vocabulary(
    data_config: object, workdir: str, *, process_index: int | None = None, wait_timeout_s: float = 3600.0
) -> Tokenizer:
    """Returns the run's tokenizer, writing `workdir/vocab.model` first if needed (process 0 only)."""
    settings = DataSettings.from_config(data_config)
    uris = [uri for uri, _ in parse_mixture(settings.require_train())]
    algorithmic = _all_algorithmic(uris)
    path = storage.join(workdir, VOCAB_FILE)
    if process_index is None:
        import jax

        process_index = jax.process_index()
    if process_index == 0 and not storage.exists(path):
        _create(settings, uris, algorithmic, path)
    elif process_index != 0:
        _wait_for(path, process_index, wait_timeout_s)
    tokenizer = Tokenizer.load(path)
    _check_matches(tokenizer, settings, algorithmic)
    return tokenizer


def sample_lines(pairs: Iterable[tuple[str, str]], num_lines: int, seed: int) -> list[str]:
    """Both sides of a uniform random sample of ceil(num_lines / 2) pairs with a non-empty target and a non-empty
    or no source (one-sided data's source is ''), by reservoir sampling; empty lines left out."""
    capacity = math.ceil(num_lines / 2)
    rng = np.random.default_rng(seed)
    reservoir: list[tuple[str, str]] = []
    for seen, pair in enumerate(_non_empty(pairs)):
        if seen < capacity:
            reservoir.append(pair)
            continue
        slot = int(rng.integers(0, seen + 1))
        if slot < capacity:
            reservoir[slot] = pair
    return [line for pair in reservoir for line in pair if line]


def _create(settings: DataSettings, uris: list[SourceUri], algorithmic: bool, path: str) -> None:
    if settings.vocab_path:
        _copy_model(settings, path)
    elif algorithmic:
        write_algorithmic_vocabulary(path)
    else:
        for uri in uris:
            sources.check_train_files(uri)
        pairs = (pair for uri in uris for pair in sources.training_text(uri, settings))
        lines = sample_lines(pairs, settings.vocab_sample_lines, settings.seed)
        _log.info("training a %d-piece %s SentencePiece model on %d sampled lines -> %s", settings.vocab_size,
                  settings.vocab_model_type, len(lines), path)
        train_tokenizer(lines, path, settings.vocab_size, settings.vocab_model_type)


def _copy_model(settings: DataSettings, path: str) -> None:
    supplied = Tokenizer.load(settings.vocab_path)  # checks it exists and uses the T2T ids
    _check_size(supplied, settings)
    storage.write_atomically(path, _read(supplied.path))


def _check_matches(tokenizer: Tokenizer, settings: DataSettings, algorithmic: bool) -> None:
    """UserError when the workdir's vocabulary is not the one this config asks for."""
    if settings.vocab_path and _read(settings.vocab_path) != _read(tokenizer.path):
        raise UserError(f"{tokenizer.path} differs from data.vocab_path={settings.vocab_path}: "
                        "use a new workdir, or drop data.vocab_path to keep the workdir's vocabulary")
    if algorithmic and not settings.vocab_path:
        if tokenizer.vocab_size != _ALGORITHMIC_VOCAB_SIZE:
            raise UserError(f"{tokenizer.path} has {tokenizer.vocab_size} pieces, not the fixed "
                            f"{_ALGORITHMIC_VOCAB_SIZE} of the algorithmic tasks: use a new workdir")
        return
    _check_size(tokenizer, settings)


def _check_size(tokenizer: Tokenizer, settings: DataSettings) -> None:
    if tokenizer.vocab_size != settings.vocab_size:
        where = f"data.vocab_path={settings.vocab_path}" if settings.vocab_path else tokenizer.path
        advice = "" if settings.vocab_path else " or use a new workdir"
        raise UserError(f"data.vocab_size={settings.vocab_size} but {where} has {tokenizer.vocab_size} pieces: "
                        f"set data.vocab_size={tokenizer.vocab_size}{advice}")


def _all_algorithmic(uris: list[SourceUri]) -> bool:
    kinds = {isinstance(uri, AlgorithmicUri) for uri in uris}
    if len(kinds) > 1:
        raise UserError("data.train mixes algorithmic: tasks with text sources; their vocabularies differ")
    return kinds == {True}


def _wait_for(path: str, process_index: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not storage.exists(path):
        if time.monotonic() > deadline:
            raise UserError(f"process {process_index} waited {timeout_s:.0f} s for {path} from process 0: "
                            "is process 0 running, and is the workdir shared by all hosts?")
        time.sleep(_POLL_SECONDS)


def _non_empty(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    return (pair for pair in pairs if (pair[0].strip() or not pair[0]) and pair[1].strip())


def _read(path: str) -> bytes:
    if not storage.is_file(path):
        raise UserError(f"SentencePiece model not found: {path}")
    return storage.read_bytes(path)
