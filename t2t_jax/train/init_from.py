"""Fine-tuning: `train.init_from = WORKDIR[:CHECKPOINT]` starts a new run from a trained model's parameters and
vocabulary, with a fresh optimizer and step count, on the run's own data and settings.

The new model must have the trained one's parameter shapes (its sizes, embeddings sharing, positions, layer
layout) and vocabulary; dropout, the schedule, the data and the decode settings are the new run's. Only a fresh
run starts from the trained model: once the new workdir holds checkpoints, the run resumes from its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from t2t_jax import configuration, storage
from t2t_jax.data.tokenizer import VOCAB_FILE, Tokenizer
from t2t_jax.errors import UserError
from t2t_jax.model import build_model, init_variables
from t2t_jax.settings import TrainSettings
from t2t_jax.train.state import restore_params_and_step

_CHECKPOINTS = ("latest", "best", "averaged")


def source(config: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(workdir, checkpoint) of train.init_from, or None when the run starts from random weights. The checkpoint
    is the text after the last ':' when that is latest, best, averaged or a step number (gs:// paths keep theirs)."""
    spec = TrainSettings.from_config(config.train).init_from
    if not spec:
        return None
    workdir, _, which = spec.rpartition(":")
    if workdir and (which in _CHECKPOINTS or which.isdigit()):
        return workdir, which
    return spec, "latest"


def prepare(config: ml_collections.ConfigDict) -> None:
    """Checks that the new run's model has the trained one's parameter shapes, and points data.vocab_path (and
    vocab_size) at its vocabulary, so that the new workdir's vocab.model is a copy of it. Raises UserError naming
    what differs."""
    workdir, _ = source(config)
    trained = configuration.load_workdir_config(workdir)
    vocabulary = storage.join(workdir, VOCAB_FILE)
    if not storage.exists(vocabulary):
        raise UserError(f"train.init_from: {workdir} holds no {VOCAB_FILE}: it is not a trained model's workdir")
    if config.data.vocab_path and config.data.vocab_path != vocabulary:
        raise UserError(f"train.init_from={workdir} brings its own vocabulary; data.vocab_path="
                        f"{config.data.vocab_path} would be another: drop data.vocab_path")
    vocab_size = Tokenizer.load(vocabulary).vocab_size
    if not _same_shapes(trained, config, vocab_size):
        differences = [d for d in configuration.model_differences(trained, config) if d.startswith("model.")]
        raise UserError(f"train.init_from={workdir}: this run's model differs from the trained one "
                        f"({'; '.join(differences) or 'parameter shapes'}): fine-tuning keeps the model's sizes "
                        "(set them as they were)")
    config.data.update(vocab_path=vocabulary, vocab_size=vocab_size, vocab_model_type=trained.data.vocab_model_type)


def initial_params(config: ml_collections.ConfigDict, vocab_size: int, mesh: Mesh) -> tuple[object, int]:
    """The trained model's parameters on `mesh` (sharded as this run's), and the step they were saved at."""
    workdir, which = source(config)
    trained = configuration.load_workdir_config(workdir)
    return restore_params_and_step(workdir, trained, vocab_size, which, mesh)


def _same_shapes(trained: ml_collections.ConfigDict, config: ml_collections.ConfigDict, vocab_size: int) -> bool:
    def shapes(run: ml_collections.ConfigDict) -> object:
        model = build_model(configuration.model_config(run, vocab_size))
        dummy = jnp.ones((1, 8), jnp.int32)
        tree = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), dummy))["params"]
        return jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype), tree)

    return shapes(trained) == shapes(config)
