"""The training arithmetic: label smoothing with T2T's constant, the paper's schedule, accumulation."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from train_helpers import TINY_MODEL

from t2t_jax.configuration import default_config, model_config
from t2t_jax.model import Transformer
from t2t_jax.train import step
from t2t_jax.train.loss import loss_metrics, token_losses
from t2t_jax.train.optim import learning_rate_schedule, make_optimizer


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_smoothed_loss_is_zero_at_the_optimum_and_positive_elsewhere(smoothing):
    vocab, target = 11, 4
    optimum = np.full(vocab, smoothing / (vocab - 1))
    optimum[target] = 1 - smoothing
    logits = jnp.log(jnp.asarray(optimum if smoothing else np.eye(vocab)[target] + 1e-30))[None, None]
    loss, nll = token_losses(logits, jnp.array([[target]]), smoothing)
    assert abs(float(loss[0, 0])) < 1e-4
    worse, _ = token_losses(jnp.zeros((1, 1, vocab)), jnp.array([[target]]), smoothing)
    assert float(worse[0, 0]) > 0.1
    assert float(nll[0, 0]) == pytest.approx(-np.log(optimum[target] if smoothing else 1.0), abs=1e-4)


def test_padding_has_no_weight():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 7))
    targets = jnp.array([[3, 2, 0], [1, 0, 0]])
    metrics = loss_metrics(logits, targets, 0.1)
    assert float(metrics["tokens"]) == 3
    changed = logits.at[0, 2].set(100.0).at[1, 1:].set(-100.0)  # only padded positions change
    assert float(loss_metrics(changed, targets, 0.1)["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-6)


def test_rsqrt_schedule_is_the_papers_formula():
    train = ml_collections.ConfigDict(dict(schedule="rsqrt", warmup_steps=4000, learning_rate_scale=1.0))
    schedule = learning_rate_schedule(train, 512)
    for step_number in (1, 100, 4000, 10_000, 100_000):
        expected = 512**-0.5 * min(step_number**-0.5, step_number * 4000**-1.5)
        assert float(schedule(step_number - 1)) == pytest.approx(expected, rel=1e-5)
    peak = float(schedule(3999))  # the peak is at the end of warmup
    assert all(float(schedule(s)) <= peak for s in range(0, 20_000, 97))


def test_optimizer_uses_the_papers_adam_settings():
    config = default_config()
    assert (config.train.adam_b1, config.train.adam_b2, config.train.adam_eps) == (0.9, 0.98, 1e-9)
    assert config.train.label_smoothing == 0.1 and config.train.warmup_steps == 4000


def test_two_accumulated_microbatches_equal_one_batch_with_both():
    config = default_config()
    config.model.update(TINY_MODEL, dropout_rate=0.0)
    model = Transformer(model_config(config, 20))
    optimizer = make_optimizer(config.train, 32)
    rng = np.random.default_rng(0)
    first = {"inputs": jnp.asarray(rng.integers(1, 20, (2, 5))), "targets": jnp.asarray(rng.integers(1, 20, (2, 5)))}
    second = {"inputs": jnp.asarray(rng.integers(1, 20, (2, 5))), "targets": jnp.asarray(rng.integers(1, 20, (2, 5)))}
    second["targets"] = second["targets"].at[:, 3:].set(0)  # different token counts
    both = {name: jnp.concatenate([first[name], second[name]]) for name in first}
    params = jax.jit(model.init)(jax.random.PRNGKey(0), first["inputs"], first["targets"])["params"]
    params = jax.tree_util.tree_map(lambda x: x.value if hasattr(x, "value") else x, params,
                                    is_leaf=lambda x: hasattr(x, "value"))
    state = step.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))
    key = jax.random.PRNGKey(1)
    grads = functools.partial(step.compute_gradients, model=model, label_smoothing=0.1)
    apply = functools.partial(step.apply_gradients, optimizer=optimizer)
    g1, m1 = grads(params, first, key)
    g2, m2 = grads(params, second, key)
    one = jnp.float32(1)
    accumulated, _ = apply(state, step.add_trees(g1, g2), step.add_trees(m1, m2), one)
    g, m = grads(params, both, key)
    single, _ = apply(state, g, m, one)
    for a, b in zip(jax.tree_util.tree_leaves(accumulated.params), jax.tree_util.tree_leaves(single.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # a time-budgeted schedule's factor scales the whole update (weight decay included)
    quarter, _ = apply(state, g, m, jnp.float32(0.25))
    for before, full, scaled in zip(*(jax.tree_util.tree_leaves(tree) for tree in (params, single.params,
                                                                                   quarter.params))):
        np.testing.assert_allclose(scaled - before, 0.25 * (full - before), rtol=1e-3, atol=1e-7)
