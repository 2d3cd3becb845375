"""Summarization: configs/cnn_dailymail.py, long TFDS articles truncated (not dropped) in training on a mocked
cnn_dailymail, ROUGE in `evaluate` equal to rouge-score's own figures, and `t2t-jax eval` with decode.metric."""

import json
import os

import numpy as np
import pytest
from conftest import WORDS, data_config
from rouge_score import rouge_scorer
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli

from t2t_jax import evaluate
from t2t_jax.configuration import load_config, model_config
from t2t_jax.data import pipeline
from t2t_jax.data.settings import DataSettings
from t2t_jax.errors import UserError
from t2t_jax.settings import DecodeSettings, TrainSettings

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")


# --- the config -------------------------------------------------------------------------------------------------
def test_config_is_t2t_summarize_cnn_dailymail32k_with_transformer_prepend_settings():
    config = load_config(os.path.join(ROOT, "configs", "cnn_dailymail.py"))
    data = DataSettings.from_config(config.data)
    assert (data.train, data.eval) == ("tfds:cnn_dailymail", "tfds:cnn_dailymail?split=validation")
    assert (data.source_lang, data.target_lang, data.vocab_size) == ("article", "highlights", 32768)
    assert (data.max_source_length, data.truncate_sources, data.max_target_length) == (750, True, 128)
    model = model_config(config, data.vocab_size)
    assert (model.d_model, model.d_ff, model.num_heads, model.num_encoder_layers, model.num_decoder_layers) == (
        512, 2048, 8, 6, 6)
    assert (model.norm_placement, model.share_embeddings) == ("pre", "all")
    assert model.dropout_rate == model.attention_dropout_rate == model.relu_dropout_rate == 0.1
    train = TrainSettings.from_config(config.train)
    assert (train.schedule, train.learning_rate_scale, train.warmup_steps, train.steps) == ("rsqrt", 2.0, 8000,
                                                                                           250_000)
    assert (train.adam_b1, train.adam_b2, train.adam_eps, train.label_smoothing) == (0.9, 0.98, 1e-9, 0.1)
    decode = DecodeSettings.from_config(config.decode)
    assert (decode.beam_size, decode.alpha, decode.metric) == (4, 0.6, "rouge")


def test_a_wrong_metric_is_one_clear_error():
    with pytest.raises(UserError, match="decode.metric must be bleu or rouge, got 'meteor'"):
        DecodeSettings.from_config({"metric": "meteor"})
    assert DecodeSettings.from_config({}).metric == "bleu"


# --- long articles on a mocked cnn_dailymail ---------------------------------------------------------------------
ARTICLE_WORDS = 40  # far over the 16 tokens the test allows a source
COUNT = 6


def _mock_examples():
    rng = np.random.default_rng(0)
    articles = [" ".join(rng.choice(WORDS, ARTICLE_WORDS)) + " ." for _ in range(COUNT)]
    highlights = [" ".join(rng.choice(WORDS, 2)) + " .\n" + rng.choice(WORDS) + " ." for _ in range(COUNT)]
    return articles, highlights


def _as_dataset(self, split, **kwargs):  # replaces the builder's reading of its prepared files
    articles, highlights = _mock_examples()
    return tf.data.Dataset.from_tensor_slices({"article": articles, "highlights": highlights,
                                               "id": [str(i) for i in range(COUNT)]})


def test_long_training_articles_are_truncated_not_dropped(tmp_path):
    cfg = data_config(train="tfds:cnn_dailymail", eval="tfds:cnn_dailymail?split=validation",
                      source_lang="article", target_lang="highlights", vocab_size=100, shuffle_buffer=COUNT,
                      batch_size=COUNT, max_source_length=16, max_target_length=16, truncate_sources=True)
    articles, highlights = _mock_examples()
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
        tokenizer = pipeline.build_vocabulary(cfg, str(tmp_path), process_index=0)
        batch = next(pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1))
        cfg.truncate_sources = False
        with pytest.raises(UserError):  # every article is too long: without truncation nothing is left
            next(pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1))
    assert all(len(ids) > 16 for ids in tokenizer.encode_batch(articles))
    assert all(len(ids) < 16 for ids in tokenizer.encode_batch(highlights))  # summaries fit: none is dropped
    expected = {tokenizer.decode(tokenizer.encode(text)): tokenizer.encode(article)[:15] + [1]
                for article, text in zip(articles, highlights)}
    assert batch["inputs"].shape == (COUNT, 16)  # one epoch: every example once, each source cut to 16 tokens
    got = {tokenizer.decode(target): [int(i) for i in source if i] for source, target in
           zip(batch["inputs"], batch["targets"])}
    assert got == expected  # each summary with its article's first 15 tokens + EOS


# --- ROUGE --------------------------------------------------------------------------------------------------------
HYPOTHESES = ["the cats were sitting on the mat . a dog barked loudly .", "police arrested two men on monday ."]
REFERENCES = ["the cat sat on the mat .\nthe dog barked .", "two men were arrested by police on monday night ."]


def test_rouge_equals_rouge_score_and_identical_texts_score_100():
    scores = evaluate.rouge(HYPOTHESES, REFERENCES)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    own = [scorer.score(evaluate.summary_sentences(r), evaluate.summary_sentences(h))
           for h, r in zip(HYPOTHESES, REFERENCES)]
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert getattr(scores, name) == pytest.approx(100 * np.mean([s[name].fmeasure for s in own]))
    # ROUGE-1/2/L read the texts as token streams: the sentence splitting only matters for ROUGE-Lsum
    plain = scorer.score(REFERENCES[0], HYPOTHESES[0])
    assert own[0]["rouge1"].fmeasure == pytest.approx(plain["rouge1"].fmeasure)
    assert evaluate.summary_sentences(HYPOTHESES[0]) == "the cats were sitting on the mat .\na dog barked loudly ."
    assert 0 < scores.rouge2 < scores.rouge1 < 100
    same = evaluate.rouge(REFERENCES, REFERENCES)
    assert (same.rouge1, same.rouge2, same.rougeL, same.rougeLsum, same.examples) == (100, 100, 100, 100, 2)
    lines = scores.lines()
    assert [line.split()[0] for line in lines] == ["ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum"]
    assert lines[0].startswith(f"ROUGE-1 {scores.rouge1:.2f}  (F-measure, mean of 2 examples")


def test_report_follows_decode_metric():
    config = load_config(os.path.join(ROOT, "configs", "cnn_dailymail.py"))
    assert evaluate.report(HYPOTHESES, REFERENCES, config)[0].startswith("ROUGE-1 ")
    config.decode.metric = "bleu"
    assert evaluate.report(HYPOTHESES, REFERENCES, config)[0].startswith("sacreBLEU ")


# --- t2t-jax eval ---------------------------------------------------------------------------------------------------
SMALL = config_flags(model=TINY_MODEL, data=dict(TINY_DATA, batch_tokens=256, algorithmic_eval_examples=16),
                     train=dict(log_every=1, steps=2))


@pytest.fixture(scope="module")
def trained(train_workdir):
    return train_workdir("summarize", "--config", "configs/reverse.py", *SMALL)


def test_eval_prints_rouge_when_decode_metric_is_rouge(trained, tmp_path):
    path = os.path.join(trained, "config.json")  # as a workdir trained before decode.metric existed
    with open(path) as f:
        config = json.load(f)
    assert config["decode"].pop("metric") == "bleu"
    with open(path, "w") as f:
        json.dump(config, f)
    (tmp_path / "src").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "ref").write_text("3 2 1\n6 5 4\n")
    files = ["--source", str(tmp_path / "src"), "--reference", str(tmp_path / "ref")]
    result = run_cli("eval", "--workdir", trained, *files, "--config.decode.metric=rouge")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = result.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum"], lines
    assert "sacreBLEU" not in result.stdout.decode()
    wrong = run_cli("eval", "--workdir", trained, *files, "--config.decode.metric=meteor")
    assert_clear_error(wrong, "decode.metric", "bleu or rouge", "meteor")
