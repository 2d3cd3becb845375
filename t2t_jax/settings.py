"""Typed config sections: `config.train` and `config.decode` as frozen dataclasses, the one place their fields
and defaults are written, and the reader that turns any section (an ml_collections ConfigDict, a mapping or an
attribute object) into its dataclass.

`t2t_jax.configuration.default_config()` builds its sections from the dataclasses: model from TransformerConfig,
data from DataSettings (t2t_jax/data/settings.py), train from TrainSettings, decode from DecodeSettings. A field a
section lacks (a config.json of an older version) keeps its default; wrong values raise `UserError` naming the
`section.FIELD`. This module imports nothing of t2t_jax but errors: every layer may read its settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from t2t_jax.errors import UserError

Settings = TypeVar("Settings")


def read_section(cls: type[Settings], section: Any, prefix: str) -> Settings:
    """cls(**values of `section`), each checked against the type of its default; errors name `prefix.FIELD`."""
    if isinstance(section, cls):
        return section
    values = {}
    for field in dataclasses.fields(cls):
        if isinstance(section, Mapping):
            value = section.get(field.name, field.default)
        else:
            value = getattr(section, field.name, field.default)
        values[field.name] = _typed(f"{prefix}.{field.name}", value, type(field.default))
    return cls(**values)


def defaults(cls: type) -> dict[str, Any]:
    """The dataclass's fields with their defaults, in order: a config section's starting values."""
    return {field.name: field.default for field in dataclasses.fields(cls)}


def require_positive(prefix: str, settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise UserError(f"{prefix}.{name} must be positive, got {getattr(settings, name)}")


def require_not_negative(prefix: str, settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise UserError(f"{prefix}.{name} must not be negative, got {getattr(settings, name)}")


def _typed(name: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise UserError(f"{name} must be True or False, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if kind in (str, float) and not isinstance(value, kind):
        raise UserError(f"{name} must be a {'string' if kind is str else 'number'}, got {value!r}")
    return value


SCHEDULES = ("rsqrt", "constant", "cosine")
METRICS = ("bleu", "rouge")


class Section:
    """A config section's dataclass: `from_config` reads a section into it (read_section) and checks it."""

    PREFIX: ClassVar[str] = ""  # the section's name in errors: train, decode, data

    @classmethod
    def from_config(cls: type[Settings], section: Any) -> Settings:
        settings = read_section(cls, section, cls.PREFIX)
        settings.check()
        return settings

    def check(self) -> None:
        """Raises UserError for values no run can use."""


@dataclasses.dataclass(frozen=True)
class TrainSettings(Section):
    """The fields of `config.train`: the paper's recipe (section 5) by default."""

    PREFIX: ClassVar[str] = "train"
    steps: int = 100_000
    schedule: str = "rsqrt"  # rsqrt (the paper) | constant | cosine
    schedule_clock: str = "steps"  # cosine: decay over train.steps, or "time": over train.max_seconds of training
    learning_rate_scale: float = 1.0  # rsqrt: times d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    learning_rate: float = 1e-3  # constant and cosine: the peak
    warmup_steps: int = 4000
    adam_b1: float = 0.9
    adam_b2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    label_smoothing: float = 0.1
    tokens_per_update: int = 0  # > 0: accumulate microbatches up to about this many tokens per side
    seed: int = 0
    log_every: int = 100
    eval_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    max_seconds: float = 0.0  # > 0: stop (and, with the cosine schedule, finish decaying) after this training time
    eval_examples: int = 0
    eval_bleu: bool = False
    bleu_examples: int = 500
    average_last: int = 0  # > 0: at the end, average the last this many checkpoints
    average_window: float = 0.25  # schedule_clock "time": those checkpoints are spread over this end of the budget
    init_from: str = ""  # WORKDIR[:CHECKPOINT]: fine-tune from that trained model (t2t_jax/train/init_from.py)

    def check(self) -> None:
        require_positive("train", self, ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"))
        require_not_negative("train", self, ("warmup_steps", "weight_decay", "grad_clip_norm", "tokens_per_update",
                                      "max_seconds", "eval_examples", "bleu_examples", "average_last"))
        if self.schedule not in SCHEDULES:
            raise UserError(f"train.schedule must be rsqrt, constant or cosine, got {self.schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.schedule_clock not in ("steps", "time"):
            raise UserError(f"train.schedule_clock must be steps or time, got {self.schedule_clock!r}")
        if self.timed and (self.schedule != "cosine" or self.max_seconds <= 0):
            raise UserError("train.schedule_clock=time decays the cosine schedule over the time budget: it needs "
                            f"train.schedule=cosine and train.max_seconds > 0 (got {self.schedule!r}, "
                            f"{self.max_seconds:g})")
        if not 0.0 < self.average_window <= 1.0:
            raise UserError(f"train.average_window must be in (0, 1], got {self.average_window}")

    @property
    def timed(self) -> bool:
        """Whether the schedule's progress is training time over train.max_seconds (else steps over train.steps)."""
        return self.schedule_clock == "time"


@dataclasses.dataclass(frozen=True)
class DecodeSettings(Section):
    """The fields of `config.decode`: beam search as in the paper (section 6.1)."""

    PREFIX: ClassVar[str] = "decode"
    beam_size: int = 4
    alpha: float = 0.6  # length penalty ((5 + length) / 6) ** alpha
    max_extra_length: int = 50  # a translation has at most source length + this many tokens
    batch_tokens: int = 4096  # source tokens per decoding batch
    metric: str = "bleu"  # what `t2t-jax eval` reports: bleu (sacreBLEU, chrF) | rouge (ROUGE-1/2/L, summaries)

    def check(self) -> None:
        require_positive("decode", self, ("beam_size", "batch_tokens"))
        require_not_negative("decode", self, ("alpha", "max_extra_length"))
        if self.metric not in METRICS:
            raise UserError(f"decode.metric must be bleu or rouge, got {self.metric!r}")
