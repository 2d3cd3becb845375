"""Fine-tuning (train.init_from): a new run starts from a trained model's parameters and vocabulary with a fresh
optimizer and step 0, its first step's loss on the old data is the trained model's, and a model of another shape or
vocabulary is one clear error."""

import json

import pytest
from train_helpers import TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, reverse_config, run_cli

from t2t_jax import configuration, data
from t2t_jax.model import Transformer
from t2t_jax.train import loop, step
from t2t_jax.train.state import restore_params

pytestmark = pytest.mark.slow  # every test trains (or starts training) a model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("trained") / "w")
    loop.train_and_evaluate(reverse_config(steps=8), workdir)
    return workdir


def first_train_line(workdir):
    lines = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
    return next(line for line in lines if line["kind"] == "train")


def test_the_first_step_of_fine_tuning_has_the_trained_models_loss(trained, tmp_path):
    config = reverse_config(steps=2, init_from=f"{trained}:latest", learning_rate=1e-4)
    loop.train_and_evaluate(config, str(tmp_path / "tuned"))
    first = first_train_line(tmp_path / "tuned")
    assert first["step"] == 1  # a fresh step count
    # the trained model's loss on the fine-tuning run's first batch (the same data stream from its start)
    old = configuration.load_workdir_config(trained)
    tokenizer = data.Tokenizer.load(f"{trained}/vocab.model")
    params = restore_params(trained, old, tokenizer.vocab_size)
    batch = next(data.train_iterator(config.data, tokenizer, seed=config.data.seed))
    sums = step.eval_step(params, batch, model=Transformer(configuration.model_config(old, tokenizer.vocab_size)),
                          label_smoothing=config.train.label_smoothing)
    assert first["loss"] == pytest.approx(float(sums["loss"]) / float(sums["tokens"]), rel=1e-5)
    assert open(tmp_path / "tuned" / "vocab.model", "rb").read() == open(f"{trained}/vocab.model", "rb").read()
    # run again: it resumes its own checkpoint, not the trained model's
    config = reverse_config(steps=3, init_from=trained, learning_rate=1e-4)
    loop.train_and_evaluate(config, str(tmp_path / "tuned"))
    lines = [json.loads(line) for line in open(tmp_path / "tuned" / "metrics.jsonl")]
    assert [line["step"] for line in lines if line["kind"] == "train"][-1] == 3


SMALL = ["--config", "configs/reverse.py", *config_flags(model=TINY_MODEL, data={**TINY_DATA, "batch_tokens": 256},
                                                          train={"steps": 1, "eval_every": 1000})]


@pytest.mark.parametrize("flags, words", [
    (["--config.model.d_model=64"], ["model.d_model: 32 -> 64", "fine-tuning keeps"]),
    (["--config.model.num_encoder_layers=2"], ["model.num_encoder_layers: 1 -> 2"]),
])
def test_another_shape_is_one_clear_error_and_writes_no_checkpoint(trained, tmp_path, flags, words):
    workdir = tmp_path / "tuned"
    result = run_cli("train", *SMALL, "--workdir", str(workdir), f"--config.train.init_from={trained}", *flags)
    assert_clear_error(result, "train.init_from", *words)
    assert not (workdir / "checkpoints").exists()


def test_a_missing_model_or_another_vocabulary_is_one_clear_error(trained, tmp_path):
    missing = run_cli("train", *SMALL, "--workdir", str(tmp_path / "a"), f"--config.train.init_from={tmp_path}/none")
    assert_clear_error(missing, "config.json")
    vocab = tmp_path / "other.model"
    vocab.write_bytes(b"not the trained vocabulary")
    other = run_cli("train", *SMALL, "--workdir", str(tmp_path / "b"), f"--config.train.init_from={trained}",
                    f"--config.data.vocab_path={vocab}")
    assert_clear_error(other, "own vocabulary", "data.vocab_path")
    step_missing = run_cli("train", *SMALL, "--workdir", str(tmp_path / "c"),
                           f"--config.train.init_from={trained}:99")
    assert_clear_error(step_missing, "99")
