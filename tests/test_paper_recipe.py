"""The paper's recipe: Table 3's parameter counts, the base/big configs, and scoring newstest2014."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_helpers import ROOT

from t2t_jax.configuration import load_config, model_config
from t2t_jax.model import Transformer
from t2t_jax.train.loop import accumulation_steps

sys.path.insert(0, os.path.join(ROOT, "configs"))
import table3  # noqa: E402

# Table 3 does not give its vocabulary size; the text says "about 37000" shared BPE tokens. Every row of its
# parameter column is consistent with about 41k: base, 65M, is 44.1M of layers plus V x 512 embeddings. We count
# each variant at that vocabulary (fitted on the base row alone) and check the other rows against the paper.
PAPER_VOCAB = 41_000


def count(config):
    model = Transformer(model_config(config, PAPER_VOCAB))
    dummy = jnp.ones((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, dummy))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes["params"]))


@pytest.mark.parametrize("variant", [name for name, (_, paper) in table3.VARIANTS.items() if paper is not None])
def test_table3_parameter_counts_match_the_paper_within_3_percent(variant):
    paper = table3.VARIANTS[variant][1]
    ours = count(load_config(os.path.join(ROOT, "configs", "table3.py") + ":" + variant)) / 1e6
    assert abs(ours - paper) / paper <= 0.03, f"{variant}: {ours:.1f}M vs the paper's {paper}M"


@pytest.mark.parametrize("variant", ["A1", "A4", "A16", "A32"])
def test_table3_A_keeps_the_computation_and_parameters_of_base(variant):
    ours = count(load_config(os.path.join(ROOT, "configs", "table3.py") + ":" + variant))
    assert ours == count(load_config(os.path.join(ROOT, "configs", "table3.py") + ":base"))


def test_unknown_table3_variant_is_a_clear_error():
    from t2t_jax.errors import UserError

    with pytest.raises(UserError, match="unknown Table 3 variant 'Z9'"):
        load_config(os.path.join(ROOT, "configs", "table3.py") + ":Z9")


@pytest.mark.parametrize("name,d_model,steps,average,dropout", [
    ("base", 512, 100_000, 5, 0.1), ("big", 1024, 300_000, 20, 0.3),
    ("base_enfr", 512, 100_000, 5, 0.1), ("big_enfr", 1024, 300_000, 20, 0.1),  # en-fr big: P_drop 0.1
])
def test_base_and_big_configs_follow_the_paper(name, d_model, steps, average, dropout):
    config = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    assert config.model.d_model == d_model and config.model.dropout_rate == dropout
    assert (config.train.steps, config.train.average_last, config.train.warmup_steps) == (steps, average, 4000)
    assert (config.train.adam_b1, config.train.adam_b2, config.train.adam_eps) == (0.9, 0.98, 1e-9)
    assert config.train.label_smoothing == 0.1 and config.train.tokens_per_update == 25_000
    for devices, microbatches in ((1, 8), (8, 1), (64, 1)):  # the paper's 25k tokens per update on 1 or 8 devices
        assert accumulation_steps(config, devices) == microbatches, devices
    assert config.data.batch_tokens * 8 == 25_000
    assert (config.decode.beam_size, config.decode.alpha, config.decode.max_extra_length) == (4, 0.6, 50)
    pair, target = ("fr-en", "fr") if name.endswith("enfr") else ("de-en", "de")
    assert config.data.train == f"tfds:wmt14_translate/{pair}" and config.data.target_lang == target
    assert config.data.source_lang == "en" and config.data.vocab_size == 32000


@pytest.mark.parametrize("name", ["base", "base_enfr"])
def test_the_wmt14_recipe_trains_on_mocked_tfds_data(tmp_path, name):
    """The real base model (en-de; a smaller one for en-fr, whose new part is the data), optimizer, schedule and
    gradient accumulation for two updates on tfds.testing.mock_data (random text: a small vocabulary and batch,
    otherwise the config as shipped). Big differs only in sizes (test above): 214M parameters take minutes here."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from train_helpers import train_losses

    from t2t_jax.train.loop import train_and_evaluate

    config = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    if name == "base_enfr":
        config.model.update(d_model=64, d_ff=128, num_heads=4, num_encoder_layers=2, num_decoder_layers=2)
    config.data.update(vocab_size=64, batch_tokens=256, max_source_length=64, max_target_length=64,
                       shuffle_buffer=16)
    config.train.update(steps=2, tokens_per_update=512, log_every=1, eval_every=2, checkpoint_every=2,
                        eval_examples=8, eval_bleu=True, bleu_examples=2, average_last=0)
    config.decode.max_extra_length = 4  # random weights decode to the length limit; keep that short here
    with tfds.testing.mock_data(num_examples=32):
        result = train_and_evaluate(config, str(tmp_path / name))
    losses = train_losses(str(tmp_path / name))
    assert sorted(losses) == [1, 2] and all(np.isfinite(list(losses.values())))
    assert "bleu" in result["eval"] and np.isfinite(result["eval"]["loss"])


@pytest.mark.parametrize("name", ["base", "big"])
@pytest.mark.parametrize("backend,compute", [("cpu", jnp.float32), ("gpu", jnp.bfloat16), ("tpu", jnp.bfloat16)])
def test_base_and_big_compute_in_bfloat16_on_accelerators_and_float32_on_cpus(name, backend, compute, monkeypatch):
    config = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    model = model_config(config, PAPER_VOCAB)
    assert (model.dtype, model.param_dtype) == (jnp.dtype(compute), jnp.dtype(jnp.float32))
    config.model.dtype = "float32"  # set explicitly: kept on any backend
    assert model_config(config, PAPER_VOCAB).dtype == jnp.dtype(jnp.float32)
