"""`config.data` read once into a typed, checked, frozen `DataSettings`.

Every field has the documented default except `train` and `eval`, which are required by the functions that use
them (`require_train`, `require_eval`). Wrong values raise `UserError` naming the `data.FIELD`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from t2t_jax.errors import UserError
from t2t_jax.settings import Section, require_positive

_POSITIVE = ("vocab_size", "vocab_sample_lines", "max_source_length", "max_target_length", "batch_tokens",
             "pack_length", "shuffle_buffer", "algorithmic_min_length", "algorithmic_max_length",
             "algorithmic_eval_examples")


@dataclasses.dataclass(frozen=True)
class DataSettings(Section):
    """The fields of `config.data`, with their defaults."""

    PREFIX: ClassVar[str] = "data"
    train: str = ""
    eval: str = ""
    source_lang: str = "en"
    target_lang: str = "de"
    tfds_data_dir: str = ""
    vocab_path: str = ""
    vocab_size: int = 32000
    vocab_model_type: str = "bpe"
    vocab_sample_lines: int = 1_000_000
    max_source_length: int = 256
    max_target_length: int = 256
    truncate_sources: bool = False  # cut longer training sources to max_source_length instead of skipping them
    batch_tokens: int = 4096
    batch_size: int = 0
    packing: bool = False
    pack_length: int = 256
    shuffle_buffer: int = 50_000
    seed: int = 0
    algorithmic_min_length: int = 1
    algorithmic_max_length: int = 20
    algorithmic_eval_examples: int = 1000

    def check(self) -> None:
        """Raises UserError for values no pipeline can use."""
        require_positive("data", self, _POSITIVE)
        if self.batch_size < 0:
            raise UserError(f"data.batch_size must be 0 (use batch_tokens) or positive, got {self.batch_size}")
        if self.vocab_model_type not in ("bpe", "unigram"):
            raise UserError(f"data.vocab_model_type must be 'bpe' or 'unigram', got {self.vocab_model_type!r}")
        if self.algorithmic_min_length > self.algorithmic_max_length:
            raise UserError(f"data.algorithmic_min_length={self.algorithmic_min_length} is larger than "
                            f"data.algorithmic_max_length={self.algorithmic_max_length}")

    def require_train(self) -> str:
        if not self.train.strip():
            raise UserError("data.train is not set: give a data URI such as text:train.en,train.de")
        return self.train

    def require_eval(self) -> str:
        if not self.eval.strip():
            raise UserError("data.eval is not set: give a data URI such as text:valid.en,valid.de")
        return self.eval
