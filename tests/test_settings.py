"""The config sections' fields and defaults come from one place each, and wrong values are one clear error."""

import dataclasses

import pytest

from t2t_jax.configuration import default_config, load_config, model_config, model_section
from t2t_jax.data.settings import DataSettings
from t2t_jax.errors import UserError
from t2t_jax.model import TransformerConfig
from t2t_jax.settings import DecodeSettings, TrainSettings


def test_default_config_sections_are_the_dataclasses_defaults():
    config = default_config()
    assert dict(config.data) == dataclasses.asdict(DataSettings())
    assert dict(config.train) == dataclasses.asdict(TrainSettings())
    assert dict(config.decode) == dataclasses.asdict(DecodeSettings())
    assert model_config(config, vocab_size=37000) == TransformerConfig.base(vocab_size=37000)


def test_a_preset_round_trips_through_the_model_section():
    config = default_config()
    preset = TransformerConfig.big(vocab_size=1, d_k=32, dtype="bfloat16", layer_norm_epsilon=1e-5)
    config.model.update(model_section(preset))
    assert model_config(config, vocab_size=1) == preset


def test_configs_tiny_is_the_tiny_preset():
    assert model_config(load_config("configs/tiny.py"), 8000) == TransformerConfig.tiny(vocab_size=8000)


@pytest.mark.parametrize("section, key, value, words", [
    ("train", "steps", 0, "train.steps must be positive"),
    ("train", "schedule", "linear", "train.schedule must be"),
    ("train", "max_seconds", -1.0, "train.max_seconds must not be negative"),
    ("train", "label_smoothing", 1.0, "train.label_smoothing"),
    ("train", "eval_bleu", "yes", "train.eval_bleu must be True or False"),
    ("decode", "beam_size", 0, "decode.beam_size must be positive"),
    ("decode", "alpha", -0.5, "decode.alpha must not be negative"),
])
def test_wrong_values_name_their_setting(section, key, value, words):
    cls = TrainSettings if section == "train" else DecodeSettings
    with pytest.raises(UserError, match=words):
        cls.from_config({key: value})


def test_an_older_config_json_without_a_field_keeps_its_default():
    assert TrainSettings.from_config({"steps": 5}) == TrainSettings(steps=5)
    assert DecodeSettings.from_config({"beam_size": 2}).alpha == DecodeSettings().alpha
