"""Training end to end on the reverse task: losses fall, resume is exact, checkpoints average."""

import os

import jax
import numpy as np
import pytest
from train_helpers import reverse_config, train_losses

from t2t_jax.errors import UserError
from t2t_jax.train import checkpoint
from t2t_jax.train.loop import train_and_evaluate


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train_and_evaluate(reverse_config(steps=6), straight)
    train_and_evaluate(reverse_config(steps=3), resumed)
    train_and_evaluate(reverse_config(steps=6), resumed)  # picks up at step 3: params, optimizer, data, rng
    expected, got = train_losses(straight), train_losses(resumed)
    assert [got[s] for s in range(1, 7)] == [expected[s] for s in range(1, 7)], (expected, got)


def test_training_reduces_the_loss(tmp_path):
    workdir = str(tmp_path / "w")
    result = train_and_evaluate(reverse_config(steps=150, eval_every=150, checkpoint_every=150, log_every=10),
                                workdir)
    losses = train_losses(workdir)
    # over 12 seeds the ratio was 0.22-0.27 (at 60 steps it was 0.58-0.68, too close to a bound to hold on any CPU)
    assert losses[150] < 0.5 * losses[10], losses
    assert np.isfinite(result["eval"]["loss"]) and result["eval"]["perplexity"] >= 1.0


def test_checkpoint_averaging_is_the_mean_of_the_last_checkpoints(tmp_path):
    workdir = str(tmp_path / "w")
    train_and_evaluate(reverse_config(steps=4, checkpoint_every=1, keep_checkpoints=5, average_last=2), workdir)
    target = _abstract_state(workdir)
    third, _ = checkpoint.restore_state(workdir, "3", target)
    fourth, _ = checkpoint.restore_state(workdir, "4", target)
    averaged, step = checkpoint.restore_state(workdir, "averaged", target)
    assert step == 4
    mean = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, third.params, fourth.params)
    for got, want in zip(jax.tree_util.tree_leaves(averaged.params), jax.tree_util.tree_leaves(mean)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert checkpoint.average_checkpoints(workdir, 1, target) == (4, [4])  # again, over another N: replaced
    averaged, _ = checkpoint.restore_state(workdir, "averaged", target)
    for got, want in zip(jax.tree_util.tree_leaves(averaged.params), jax.tree_util.tree_leaves(fourth.params)):
        np.testing.assert_array_equal(got, want)


def _spoil(state_dir):
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one_and_nothing_is_deleted(tmp_path, caplog):
    workdir = str(tmp_path / "w")
    train_and_evaluate(reverse_config(steps=4, checkpoint_every=2), workdir)
    _spoil(os.path.join(workdir, "checkpoints", "4", "state"))
    result = train_and_evaluate(reverse_config(steps=4, checkpoint_every=2), workdir)
    assert "cannot be restored" in caplog.text
    assert np.isfinite(result["train"]["loss"])  # steps 3 and 4 were trained again from step 2
    # the same step spoiled again: the first copy set aside stays (it used to be deleted)
    _spoil(os.path.join(workdir, "checkpoints", "4", "state"))
    train_and_evaluate(reverse_config(steps=5, checkpoint_every=2), workdir)
    assert max(train_losses(workdir)) == 5
    assert sorted(os.listdir(os.path.join(workdir, "corrupt"))) == ["4", "4.1"]


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "w")
    train_and_evaluate(reverse_config(steps=2, checkpoint_every=2), workdir)
    with pytest.raises(UserError, match="loss became nan"):
        train_and_evaluate(reverse_config(steps=4, learning_rate=float("nan")), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]


def _abstract_state(workdir):
    from t2t_jax import sharding
    from t2t_jax.configuration import load_workdir_config
    from t2t_jax.data.tokenizer import Tokenizer
    from t2t_jax.train.state import abstract_train_state

    config = load_workdir_config(workdir)
    vocab = Tokenizer.load(os.path.join(workdir, "vocab.model")).vocab_size
    return abstract_train_state(config, vocab, sharding.make_mesh(config.mesh))


def test_a_changed_data_setting_is_one_clear_error_that_moves_nothing(tmp_path):
    """It used to look like corruption: every checkpoint moved to corrupt/, a restart at step 0, then a crash."""
    workdir = str(tmp_path / "w")
    train_and_evaluate(reverse_config(steps=4, checkpoint_every=2), workdir)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    changed = reverse_config(steps=6, checkpoint_every=2)
    changed.data.packing = False
    with pytest.raises(UserError, match="data settings changed.*nothing was moved"):
        train_and_evaluate(changed, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before == ["2", "4"]
    assert not os.path.exists(os.path.join(workdir, "corrupt"))


def test_a_changed_optimizer_is_one_clear_error_that_moves_nothing(tmp_path):
    workdir = str(tmp_path / "w")
    train_and_evaluate(reverse_config(steps=2, checkpoint_every=2), workdir)
    with pytest.raises(UserError, match="does not fit this run's settings.*nothing was moved"):
        train_and_evaluate(reverse_config(steps=4, checkpoint_every=2, grad_clip_norm=1.0), workdir)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
    assert not os.path.exists(os.path.join(workdir, "corrupt"))
