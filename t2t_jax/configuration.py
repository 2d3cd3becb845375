"""Run configuration: ml_collections config files, command-line overrides, and the copy in the workdir.

A config file (configs/*.py) defines `get_config()` returning `default_config()` with its changes.
`--config.train.steps=500` style overrides are applied on top, typed by the field they replace; an unknown
key is an error that names it. The resolved config is saved as workdir/config.json, and decoding reads it
back from there, so a model is always decoded with the settings it was trained with.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from t2t_jax import settings, storage
from t2t_jax.data.settings import DataSettings
from t2t_jax.errors import UserError
from t2t_jax.model import TransformerConfig
from t2t_jax.settings import DecodeSettings, TrainSettings

CONFIG_FILE = "config.json"


def default_config() -> ml_collections.ConfigDict:
    """Every setting with its default: the paper's base model and training recipe. Each section's fields and
    defaults are written once, in its dataclass: TransformerConfig, DataSettings, TrainSettings, DecodeSettings."""
    config = ml_collections.ConfigDict()
    config.model = model_section(TransformerConfig.base(vocab_size=1))
    config.data = settings.defaults(DataSettings)
    config.train = settings.defaults(TrainSettings)
    config.decode = settings.defaults(DecodeSettings)
    config.mesh = dict(data=-1, fsdp=1, tensor=1)  # t2t_jax/sharding.py: -1 takes the devices left
    config.lock()  # a config file that sets a misspelt key (config.train.stpes) fails instead of adding it
    return config


_RUNTIME_FIELDS = ("vocab_size", "target_vocab_size", "decode")  # set from the vocabulary and by the decoder


def model_section(preset: TransformerConfig) -> dict[str, Any]:
    """A TransformerConfig (a preset: .base, .big, .tiny, or .replace(...) of one) as config.model's fields:
    dtypes by name, d_k and d_v 0 for d_model / num_heads. `config.model.update(model_section(...))` in a
    config file takes a preset's sizes."""
    fields = {field.name: getattr(preset, field.name) for field in dataclasses.fields(preset)
              if field.name not in _RUNTIME_FIELDS}
    fields["d_k"], fields["d_v"] = fields["d_k"] or 0, fields["d_v"] or 0
    fields["dtype"], fields["param_dtype"] = jnp.dtype(fields["dtype"]).name, jnp.dtype(fields["param_dtype"]).name
    return fields


def is_language_model(config: ml_collections.ConfigDict) -> bool:
    """Whether a config (or a workdir's, saved before model.kind existed) trains a decoder-only language model."""
    return config.model.get("kind", "encoder_decoder") == "decoder_only"


def example_data_dir(config_file: str, name: str) -> str:
    """Where a config file finds the example data NAME: ../shared/data/NAME beside the repository that holds
    `config_file` (configs/*.py), else data/NAME inside that repository."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
    shared = os.path.join(os.path.dirname(repo), "shared", "data", name)
    return shared if os.path.isdir(shared) else os.path.join(repo, "data", name)


def load_config(path: str, overrides: list[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
    """The config of file `path` (which defines get_config()) with `(dotted key, value text)` overrides.

    `path:ARGUMENT` passes ARGUMENT to get_config, as ml_collections' config_flags do (configs/table3.py:B16).
    """
    path, has_argument, argument = path.partition(":")
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location("t2t_jax_user_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config()")
    try:
        config = module.get_config(argument) if has_argument else module.get_config()
    except ValueError as error:
        raise UserError(f"{path}: {error}") from None
    except (AttributeError, KeyError) as error:  # a locked ConfigDict refusing a key it does not have
        raise UserError(f"{path}: {_unknown_key(error)}") from None
    for key, text in overrides:
        apply_override(config, key, text)
    return config


def _unknown_key(error: Exception) -> str:
    """ml_collections' message for a key a locked config does not have, with the closest known keys."""
    message = str(error.args[0]) if error.args else str(error)
    found = re.search(r"[Kk]ey \"?'?([A-Za-z_0-9]+)", message)
    if not found:
        return message
    name = found.group(1)
    known = [f"{section}.{key}" for section, fields in default_config().items() for key in fields]
    close = difflib.get_close_matches(name, [key.split(".")[1] for key in known], n=3)
    hint = ", ".join(key for key in known if key.split(".")[1] in close)
    return f"unknown setting '{name}'" + (f" (did you mean {hint}?)" if hint else " (see t2t_jax/configuration.py)")


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """config.<key> = text parsed as the type of the current value."""
    *parents, name = key.split(".")
    node = config
    for depth, part in enumerate(parents + [name]):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(["config"] + parents[:depth])
            known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else "no keys"
            raise UserError(f"unknown config key '{key}': {where} has no '{part}' (it has: {known})")
        if depth < len(parents):
            node = node[part]
    node[name] = _parse(text, node[name], key)


def _parse(text: str, current: Any, key: str) -> Any:
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        raise UserError(f"config.{key}={text!r}: expected a {type(current).__name__}") from None
    return text


def compute_dtype(name: str) -> jnp.dtype:
    """model.dtype: a dtype name, or "auto": bfloat16 on GPUs and TPUs (their matmul units' type; parameters,
    logits, softmax and loss stay float32), float32 on CPUs (which have no fast bfloat16 matmul)."""
    if name == "auto":
        return jnp.dtype(jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32)
    return jnp.dtype(name)


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> TransformerConfig:
    """The TransformerConfig of config.model for a shared vocabulary of `vocab_size`."""
    fields = dict(config.model)
    fields["d_k"] = fields["d_k"] or None
    fields["d_v"] = fields["d_v"] or None
    fields["dtype"] = compute_dtype(fields["dtype"])
    fields["param_dtype"] = jnp.dtype(fields["param_dtype"])
    try:
        return TransformerConfig(vocab_size=vocab_size, **fields)
    except (TypeError, ValueError) as error:
        raise UserError(f"config.model: {error}") from None


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes workdir/config.json (atomically: the other hosts of a multi-host run read it)."""
    storage.write_atomically(storage.join(workdir, CONFIG_FILE), config.to_json(indent=1).encode())


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with."""
    path = storage.join(workdir, CONFIG_FILE)
    if not storage.is_file(path):
        raise UserError(f"{workdir} holds no trained model ({CONFIG_FILE} not found): train one first")
    return ml_collections.ConfigDict(json.loads(storage.read_bytes(path)))


_HOW_NOT_WHAT = ("attention_chunk", "attention_implementation", "remat")  # how the same function is computed


def model_differences(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> list[str]:
    """Settings that change the model's shape or vocabulary between two configs."""
    keys = [f"model.{k}" for k in new.model if k not in _HOW_NOT_WHAT]
    keys += [f"data.{k}" for k in ("vocab_size", "vocab_path", "vocab_model_type")]
    differences, defaults = [], default_config()
    for key in keys:
        section, name = key.split(".")
        before, after = (config[section].get(name, defaults[section][name]) for config in (old, new))
        if before != after:
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences
