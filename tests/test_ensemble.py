"""Ensembles: every beam step averages the models' log-probabilities (the teacher-forced reference), an
ensemble of one model twice decodes as that model, and `--workdir A --workdir B` decodes with both, refusing
models of different vocabularies in one clear line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import VOCAB, init_params, random_tokens, small_config
from flax import linen as nn
from train_helpers import TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli

from t2t_jax.model import Transformer, shift_right
from t2t_jax.model.inference import ensemble_step_fn, init_cache
from t2t_jax.translate import BeamDecoder


def test_each_step_is_the_mean_of_the_models_log_probabilities():
    """Two models of different sizes; teacher forcing through the ensemble's cached steps gives, at every step,
    the mean of the two full forward passes' log-probabilities (renormalized by beam search's log-softmax)."""
    configs = [small_config(), small_config(d_ff=48, num_decoder_layers=1)]
    params = [nn.unbox(init_params(config, seed)) for seed, config in enumerate(configs)]
    inputs, targets = random_tokens(0, (2, 6)), random_tokens(1, (2, 5))
    full = [Transformer(c).apply({"params": p}, inputs, targets) for c, p in zip(configs, params)]  # [2, 5, V] each
    expected = jax.nn.log_softmax(jnp.mean(jnp.stack([jax.nn.log_softmax(f) for f in full]), axis=0))
    caches = tuple(init_cache(c, p, Transformer(c).apply({"params": p}, inputs, method=Transformer.encode), inputs,
                              max_length=5) for c, p in zip(configs, params))
    step = jax.jit(ensemble_step_fn(configs, params))
    previous = shift_right(targets)
    for t in range(5):
        combined, caches = step(previous[:, t:t + 1], caches)
        assert combined.shape == (2, VOCAB)
        np.testing.assert_allclose(jax.nn.log_softmax(combined), expected[:, t], atol=1e-4)


def test_an_ensemble_of_one_model_twice_decodes_as_the_model():
    config = small_config()
    params = nn.unbox(init_params(config))
    inputs = np.array(random_tokens(2, (3, 6)))
    inputs[1, 4:] = 0
    single = BeamDecoder(config, beam_size=3, alpha=0.6, max_extra_length=4)(params, inputs)
    double = BeamDecoder([config, config], beam_size=3, alpha=0.6, max_extra_length=4)([params, params], inputs)
    np.testing.assert_array_equal(single[0], double[0])
    np.testing.assert_allclose(single[1], double[1], atol=1e-4)


SMALL = ["--config", "configs/reverse.py", *config_flags(model=TINY_MODEL, data={**TINY_DATA, "batch_tokens": 256},
                                                          train={"steps": 30, "eval_every": 1000, "log_every": 10})]


@pytest.mark.slow  # trains two models through the CLI
def test_decode_and_eval_take_several_workdirs(train_workdir, tmp_path):
    first = train_workdir("first", *SMALL)
    second = train_workdir("second", *SMALL, "--config.train.seed=1")
    lines = b"1 2 3\n4 5 6 7\n\n8\n"
    single = [run_cli("decode", "--workdir", workdir, stdin=lines) for workdir in (first, second)]
    both = run_cli("decode", "--workdir", first, "--workdir", second, stdin=lines)
    assert both.returncode == 0, both.stderr.decode()[-2000:]
    assert len(both.stdout.decode().splitlines()) == 4 and both.stdout.decode().splitlines()[2] == ""
    assert all(result.returncode == 0 for result in single)
    (tmp_path / "s").write_text("1 2 3\n4 5\n")
    (tmp_path / "r").write_text("3 2 1\n5 4\n")
    scored = run_cli("eval", "--workdir", first, "--workdir", second, "--source", str(tmp_path / "s"),
                     "--reference", str(tmp_path / "r"))
    assert scored.returncode == 0 and "sacreBLEU" in scored.stdout.decode(), scored.stderr.decode()[-2000:]
    assert_clear_error(run_cli("attention", "--workdir", first, "--workdir", second, "--source", "1 2",
                               "--output", str(tmp_path / "a.png")), "--workdir")


@pytest.mark.slow  # trains two models through the CLI
def test_models_of_different_vocabularies_are_one_clear_error(train_workdir, tmp_path):
    first = train_workdir("reverse", *SMALL)
    other = str(tmp_path / "other")
    text = tmp_path / "t.txt"
    text.write_text("".join(f"{' '.join('abcdefgh'[(i + j) % 8] for j in range(5))}\n" for i in range(200)))
    trained = run_cli("train", "--config", "configs/tiny.py", "--workdir", other,
                      f"--config.data.train=text:{text},{text}", f"--config.data.eval=text:{text},{text}",
                      "--config.data.vocab_size=20", *config_flags(model=TINY_MODEL, data={"batch_tokens": 256},
                                                                   train={"steps": 1, "eval_every": 1000}))
    assert trained.returncode == 0, trained.stderr.decode()[-2000:]
    assert_clear_error(run_cli("decode", "--workdir", first, "--workdir", other, stdin=b"1 2\n"),
                       "another vocabulary", other)
