"""CTranslate2 export and decoding: CTranslate2's float32 log-probabilities, greedy tokens and beam-search
translations equal ours on tiny random models (post- and pre-norm, every embedding/position variant), a model
trained on real text exported through `export_ctranslate2` (float32 and int8), and the export's clear errors."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_MODEL, init_params
from flax import linen as nn
from train_helpers import ROOT, run_cli

from t2t_jax.configuration import default_config, model_config
from t2t_jax.data.tokenizer import Tokenizer, write_algorithmic_vocabulary
from t2t_jax.errors import UserError
from t2t_jax.model import Transformer
from t2t_jax.serving.ctranslate2 import CTranslate2Translator, export_ctranslate2, import_ctranslate2, write_export
from t2t_jax.translate import Translator

ctranslate2 = pytest.importorskip("ctranslate2")

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "multi30k")
EXTRA = 5  # max_extra_length: small, so that random models often run into the length limit


def tiny_config(beam_size=4, **model):
    config = default_config()
    config.model.update(SMALL_MODEL, **model)
    config.data.update(max_source_length=12)
    config.decode.update(beam_size=beam_size, alpha=0.6, max_extra_length=EXTRA)
    return config


def tiny_export(tmp_path, config, seed=0, quantize=None, eos_scale=1.0):
    """Random parameters of `config` over the 14-piece algorithmic vocabulary, exported to tmp_path/export.
    eos_scale > 1 widens the EOS logits of a separate softmax matrix, so that hypotheses end at varied lengths
    (random models otherwise repeat one token)."""
    tokenizer = write_algorithmic_vocabulary(str(tmp_path / "vocab.model"))
    model_cfg = model_config(config, tokenizer.vocab_size)
    params = nn.unbox(init_params(model_cfg, seed))
    if eos_scale != 1.0:
        kernel = params["decoder"]["logits"]["kernel"]  # [d_model, vocab]
        params["decoder"]["logits"]["kernel"] = kernel.at[:, Tokenizer.EOS_ID].multiply(eos_scale)
    decode = config.decode
    write_export(
        str(tmp_path / "export"), model_cfg, params, tokenizer.path, step=0, beam_size=decode.beam_size,
        alpha=decode.alpha, max_extra_length=decode.max_extra_length,
        max_source_length=config.data.max_source_length, quantize=quantize,
    )
    loaded = CTranslate2Translator.from_export(str(tmp_path / "export"), intra_threads=1)
    return model_cfg, params, tokenizer, loaded


def random_sources(count, seed):
    """[count] id lists ending in EOS, 1-7 digits (ids 3..12) each."""
    rng = np.random.default_rng(seed)
    return [list(rng.integers(3, 13, rng.integers(1, 8))) + [Tokenizer.EOS_ID] for _ in range(count)]


def padded(rows):
    batch = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for row, ids in enumerate(rows):
        batch[row, : len(ids)] = ids
    return jnp.asarray(batch)


def our_log_probs(model_cfg, params, sources, targets):
    """log p(targets[t] | targets[:t], source) of our model, teacher-forced: [batch, target length]."""
    targets = padded(targets)
    logits = Transformer(model_cfg).apply({"params": params}, padded(sources), targets)  # [B, T, V]
    return np.asarray(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0])


VARIANTS = {
    "post": dict(norm_placement="post"),
    "pre": dict(norm_placement="pre"),
    "separate-learned": dict(share_embeddings="none", position_encoding="learned"),
    "target-unscaled-dk": dict(share_embeddings="target", scale_embeddings=False, d_k=4, d_v=4, norm_placement="pre"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_log_probs_equal_ours(tmp_path, variant):
    """Every target token's float32 log-probability (EOS included), CTranslate2's score_batch against ours."""
    model_cfg, params, tokenizer, loaded = tiny_export(tmp_path, tiny_config(**VARIANTS[variant]))
    sources = random_sources(16, seed=1)
    rng = np.random.default_rng(2)
    targets = [list(rng.integers(2, 14, rng.integers(1, 9))) for _ in sources]  # any piece but pad and EOS
    expected = our_log_probs(model_cfg, params, sources, [t + [Tokenizer.EOS_ID] for t in targets])
    pieces = loaded.pieces
    scored = loaded.translator.score_batch(
        [[pieces[i] for i in s] for s in sources], [[pieces[i] for i in t] for t in targets], max_input_length=0
    )
    for row, result in enumerate(scored):
        ours = expected[row, : len(targets[row]) + 1]
        np.testing.assert_allclose(result.log_probs, ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_greedy_tokens_and_step_scores_equal_ours(tmp_path, norm):
    """CTranslate2's greedy search, token by token: each token is our model's argmax given the tokens before it,
    and each step's log-probability equals ours within 1e-4."""
    config = tiny_config(norm_placement=norm, share_embeddings="none")
    model_cfg, params, tokenizer, loaded = tiny_export(tmp_path, config, seed=2, eos_scale=3.0)
    sources, outputs, step_scores = random_sources(24, seed=4), [], []
    for source in sources:
        steps = list(loaded.translator.generate_tokens(
            [loaded.pieces[i] for i in source], max_decoding_length=10, min_decoding_length=0, return_log_prob=True,
            max_input_length=0,
        ))
        outputs.append([step.token_id for step in steps])  # EOS included when it came
        step_scores.append([step.log_prob for step in steps])
    ended = sum(output[-1] == Tokenizer.EOS_ID for output in outputs)
    assert 4 <= ended <= len(outputs) - 4, outputs  # both ended and cut outputs are seen
    logits = Transformer(model_cfg).apply({"params": params}, padded(sources), padded(outputs))  # [B, T, V]
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    for row, output in enumerate(outputs):
        assert log_probs[row, : len(output)].argmax(-1).tolist() == output
        np.testing.assert_allclose(step_scores[row], log_probs[row, np.arange(len(output)), output], atol=1e-4)


@pytest.mark.parametrize("norm, beam_size", [("post", 4), ("pre", 1)])
def test_translations_equal_ours(tmp_path, norm, beam_size, caplog):
    """CTranslate2Translator against our Translator: the same n-best lists (texts, and GNMT scores within 1e-4),
    empty lines, truncation of overlong lines and the length limit (source + max_extra_length) included."""
    config = tiny_config(beam_size=beam_size, norm_placement=norm, share_embeddings="none")
    model_cfg, params, tokenizer, loaded = tiny_export(tmp_path, config, seed=2, eos_scale=3.0)
    rng = np.random.default_rng(6)
    texts = [" ".join(map(str, rng.integers(0, 10, rng.integers(1, 8)))) for _ in range(40)]
    texts += ["", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5"]  # an empty line; one over max_source_length (12)
    ours = Translator(config, params, tokenizer).translate(texts, nbest=beam_size)
    with caplog.at_level("WARNING"):
        theirs = loaded.translate(texts, nbest=beam_size)
    assert "truncated" in caplog.text
    if beam_size == 1:
        assert theirs == ours
        return
    assert [[text for text, _ in best] for best in theirs] == [[text for text, _ in best] for best in ours]
    scores = np.asarray([[score for _, score in best] for best in theirs])
    np.testing.assert_allclose(scores, [[score for _, score in best] for best in ours], atol=1e-4)
    assert theirs[-2] == [("", 0.0)] * beam_size
    assert loaded.translate(["3 1 4"], beam_size=2, alpha=0.0)[0] == Translator(  # per-call settings
        config, params, tokenizer, beam_size=2, alpha=0.0).translate(["3 1 4"])[0]


def test_export_refuses_what_it_cannot_write(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "model.bin").write_bytes(b"keep me")
    with pytest.raises(UserError, match="already exists and is not empty"):
        export_ctranslate2(str(tmp_path / "no-workdir"), str(occupied))
    assert (occupied / "model.bin").read_bytes() == b"keep me"
    with pytest.raises(UserError, match="--quantize must be one of .*int8"):
        export_ctranslate2(str(tmp_path / "no-workdir"), str(tmp_path / "new"), quantize="int4")
    with pytest.raises(UserError, match="d_k 4 and d_v 8"):
        tiny_export(tmp_path, tiny_config(d_k=4, d_v=8))
    with pytest.raises(UserError, match="relative position representations"):
        tiny_export(tmp_path, tiny_config(position_encoding="relative"))
    assert not (tmp_path / "new").exists() and not (tmp_path / "export").exists()


def test_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` raises ImportError
    with pytest.raises(UserError, match=r"pip install 't2t-jax\[serve\]'"):
        import_ctranslate2()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="needs ../shared/data/multi30k")
def test_export_of_a_model_trained_on_text(tmp_path):
    """A small English->German model trained for a few steps, exported by export_ctranslate2: float32 translates
    the test set's first lines as ours does; int8 loads through serving.load and translates too."""
    from t2t_jax import serving

    workdir = str(tmp_path / "run")
    result = run_cli(
        "train", "--config", "configs/multi30k.py", "--workdir", workdir, "--config.model.d_model=64",
        "--config.model.d_ff=128", "--config.model.num_heads=2", "--config.model.num_encoder_layers=1",
        "--config.model.num_decoder_layers=1", "--config.data.vocab_size=600", "--config.data.vocab_sample_lines=3000",
        "--config.train.steps=40", "--config.train.warmup_steps=10", "--config.train.eval_every=1000",
        "--config.train.checkpoint_every=40", "--config.train.average_last=0", "--config.train.eval_bleu=false",
        "--config.train.max_seconds=0", "--config.train.schedule_clock=steps", timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    manifest = export_ctranslate2(workdir, str(tmp_path / "f32"))
    assert manifest["step"] == 40 and manifest["format"] == "ctranslate2" and manifest["quantization"] is None
    assert json.loads((tmp_path / "f32" / "manifest.json").read_text()) == manifest
    assert export_ctranslate2(workdir, str(tmp_path / "int8"), quantize="int8")["quantization"] == "int8"
    with open(os.path.join(SHARED_DATA, "test.en")) as f:
        lines = [next(f).strip() for _ in range(24)]
    ours = Translator.from_workdir(workdir).translate(lines)
    float32 = CTranslate2Translator.from_export(str(tmp_path / "f32"), intra_threads=1).translate(lines)
    assert sum(a == b for a, b in zip(ours, float32)) >= 23, list(zip(ours, float32))
    int8 = serving.load(str(tmp_path / "int8"))
    assert isinstance(int8, CTranslate2Translator) and int8.translator.compute_type.startswith("int8")
    assert all(isinstance(text, str) for text in int8.translate(lines[:4]))
