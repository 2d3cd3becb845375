"""The train state of a config: created sharded from jax.eval_shape, or its abstract form as a restore target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from t2t_jax import sharding
from t2t_jax.configuration import model_config
from t2t_jax.model import TransformerConfig, build_model, init_variables
from t2t_jax.settings import TrainSettings
from t2t_jax.train import checkpoint
from t2t_jax.train.optim import make_optimizer
from t2t_jax.train.programs import Programs, jit_programs
from t2t_jax.train.step import TrainState


def state_init_fn(
    model_cfg: TransformerConfig, optimizer: optax.GradientTransformation, seed: int
) -> Callable[[], TrainState]:
    """A function creating the (boxed, logically named) initial train state; shapes don't depend on lengths."""

    def init() -> TrainState:
        dummy = jnp.ones((1, 8), jnp.int32)
        params = init_variables(build_model(model_cfg), jax.random.PRNGKey(seed), dummy)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

    return init


def train_setup(
    config: ml_collections.ConfigDict, vocab_size: int
) -> tuple[TransformerConfig, optax.GradientTransformation, Callable[[], TrainState]]:
    model_cfg = model_config(config, vocab_size)
    optimizer = make_optimizer(config.train, model_cfg.d_model)
    return model_cfg, optimizer, state_init_fn(model_cfg, optimizer, TrainSettings.from_config(config.train).seed)


class Training(NamedTuple):
    """What a run of a config trains with on a mesh: the model, the initial state (as a function and as shapes
    and shardings) and the jitted programs (compiled on first call, or ahead of time by `.lower(...)`)."""

    model_config: TransformerConfig
    init: Callable[[], TrainState]  # the boxed, logically named initial state
    abstract: Any  # its shapes, dtypes and shardings on the mesh
    programs: Programs


def training(config: ml_collections.ConfigDict, vocab_size: int, mesh: Mesh) -> Training:
    """The one recipe for the jitted train step, shared by the trainer, `t2t-jax bench`, `t2t-jax plan` and
    benchmarks/."""
    model_cfg, optimizer, init = train_setup(config, vocab_size)
    abstract = sharding.abstract_state(init, mesh)
    programs = jit_programs(build_model(model_cfg), optimizer, TrainSettings.from_config(config.train).label_smoothing,
                            jax.tree_util.tree_map(lambda leaf: leaf.sharding, abstract), mesh)
    return Training(model_cfg, init, abstract, programs)


def restore_params(
    workdir: str, config: ml_collections.ConfigDict, vocab_size: int, which: str = "latest", mesh: Mesh | None = None
) -> Any:
    """The parameters of checkpoint `which` (latest | best | averaged | STEP), placed on `mesh`."""
    return restore_params_and_step(workdir, config, vocab_size, which, mesh)[0]


def restore_params_and_step(
    workdir: str, config: ml_collections.ConfigDict, vocab_size: int, which: str = "latest", mesh: Mesh | None = None
) -> tuple[Any, int]:
    """`restore_params` and the training step the checkpoint was saved at."""
    mesh = sharding.make_mesh(config.mesh) if mesh is None else mesh
    state, step = checkpoint.restore_state(workdir, which, abstract_train_state(config, vocab_size, mesh))
    return state.params, step


def abstract_train_state(config: ml_collections.ConfigDict, vocab_size: int, mesh: Mesh) -> Any:
    """The train state's shapes, dtypes and shardings on `mesh`, without allocating it (to restore into)."""
    return sharding.abstract_state(train_setup(config, vocab_size)[2], mesh)
