"""Data: URIs -> tokenized, batched numpy arrays; the only package of t2t-jax that imports tensorflow.

Importing this package is cheap: the names below load their module (and tensorflow) on first use.
`t2t_jax.data.tokenizer` never imports tensorflow.
"""

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # tensorflow's C++ INFO lines (CPU features...) are noise here

_EXPORTS = {
    "Tokenizer": "t2t_jax.data.tokenizer",
    "train_tokenizer": "t2t_jax.data.tokenizer",
    "TrainIterator": "t2t_jax.data.pipeline",
    "build_vocabulary": "t2t_jax.data.pipeline",
    "check_sides": "t2t_jax.data.pipeline",
    "train_iterator": "t2t_jax.data.pipeline",
    "eval_batches": "t2t_jax.data.pipeline",
    "eval_pairs": "t2t_jax.data.pipeline",
    "prepare_tfds_sources": "t2t_jax.data.pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 't2t_jax.data' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
