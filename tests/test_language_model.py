"""Decoder-only language models through the same train / eval / generate path as translation: one-sided text
data, perplexity and bits per byte in eval, `t2t-jax generate` and `Generator` with prefill, a smoothed bigram
baseline the trained model must beat, and clear errors for the wrong kind of workdir or bad options."""

import json
import os
import random

import numpy as np
import pytest
from conftest import write_lines
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli, workdir_metrics

from t2t_jax.baselines import KneserNeyBigram
from t2t_jax.configuration import load_config

LETTERS = "bcdfghjklmnpqrstvwxz"  # 20 one-letter words


def alternating(count, seed):
    """Lines 'x y x y x y x y' of two random letters: every word after the second repeats the word two before,
    which an attention layer learns and a bigram cannot (the word before says nothing about the next)."""
    rng = random.Random(seed)
    return [" ".join([first, second] * 4) for first, second in (rng.sample(LETTERS, 2) for _ in range(count))]


LM_FLAGS = ["--config.model.kind=decoder_only", "--config.model.d_model=64", "--config.model.d_ff=128",
            "--config.model.num_heads=2", "--config.model.num_decoder_layers=2", "--config.model.norm_placement=pre",
            "--config.model.dropout_rate=0.0", "--config.data.vocab_size=32",
            "--config.data.packing=true", "--config.data.pack_length=64", "--config.data.batch_tokens=512",
            "--config.train.schedule=cosine", "--config.train.learning_rate=3e-3", "--config.train.warmup_steps=20",
            "--config.train.label_smoothing=0.0", "--config.train.log_every=50", "--config.train.eval_every=1000",
            "--config.train.checkpoint_every=1000", "--config.train.average_last=0", "--config.train.eval_bleu=false"]


@pytest.fixture(scope="module")
def lm_workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    write_lines(folder / "train.txt", alternating(2000, seed=0))
    write_lines(folder / "valid.txt", alternating(200, seed=1))
    workdir = str(folder / "run")
    result = run_cli("train", "--config", "configs/lm.py", "--workdir", workdir, *LM_FLAGS,
                     f"--config.data.train=text:{folder}/train.txt", f"--config.data.eval=text:{folder}/valid.txt",
                     "--config.train.max_seconds=0", "--config.train.schedule_clock=steps", "--config.train.steps=300")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return workdir, folder


def test_configs_lm_and_lm1b_are_decoder_only_on_one_sided_data():
    lm, lm1b = load_config(os.path.join(ROOT, "configs/lm.py")), load_config(os.path.join(ROOT, "configs/lm1b.py"))
    assert lm.model.kind == lm1b.model.kind == "decoder_only"
    assert lm.data.train.startswith("text:") and "," not in lm.data.train and lm.train.max_seconds <= 600
    assert lm1b.data.train == "tfds:lm1b" and lm1b.data.source_lang == "" and lm1b.data.target_lang == "text"
    assert (lm1b.model.d_model, lm1b.model.num_decoder_layers, lm1b.data.vocab_size) == (512, 6, 32768)


@pytest.mark.slow  # trains a language model (the module fixture)
def test_a_trained_lm_reports_perplexity_and_bits_per_byte_and_beats_the_bigram(lm_workdir):
    """Eval of the trained model against an interpolated Kneser-Ney bigram on the same tokens of the same split:
    the LM must be at least 2x better in perplexity (the bigram cannot see two words back)."""
    from t2t_jax.data.tokenizer import Tokenizer

    workdir, folder = lm_workdir
    final = [row for row in workdir_metrics(workdir) if row["kind"] == "eval"][-1]
    tokenizer = Tokenizer.load(os.path.join(workdir, "vocab.model"))

    def ids(name):
        return [[*tokenizer.encode(line), 1] for line in open(folder / name).read().splitlines()]

    bigram = KneserNeyBigram(ids("train.txt"), tokenizer.vocab_size)
    total, tokens = bigram.nll(ids("valid.txt"))
    assert tokens == final["tokens"]  # the same tokens scored
    text_bytes = sum(len(line.encode()) + 1 for line in open(folder / "valid.txt").read().splitlines())
    assert final["bits_per_byte"] == pytest.approx(final["nll"] * tokens / np.log(2) / text_bytes, rel=1e-4)
    bigram_perplexity = np.exp(total / tokens)
    assert final["perplexity"] < bigram_perplexity / 2, (final["perplexity"], bigram_perplexity)


@pytest.mark.slow  # trains a language model (the module fixture)
def test_generate_continues_a_prompt_and_scores_agree_with_eval(lm_workdir):
    from t2t_jax import Generator

    workdir, folder = lm_workdir
    generator = Generator.from_workdir(workdir)
    greedy = generator.generate(["k q k q", "s t"], max_length=10, temperature=0.0)
    for (text,), prompt in zip(greedy, ["k q k q", "s t"]):
        words = text.split()
        first, second = prompt.split()[:2]
        assert words[:8] == [first, second] * 4, text  # the pattern continued past the prompt
    beam = generator.generate(["k q k q"], max_length=10, beam_size=4, num_samples=2)
    assert len(beam[0]) == 2 and beam[0][0].split()[:8] == ["k", "q"] * 4
    sampled = generator.generate(["k q"], max_length=10, num_samples=3, seed=5)
    assert sampled == generator.generate(["k q"], max_length=10, num_samples=3, seed=5)  # a seed reproduces
    valid = open(folder / "valid.txt").read().splitlines()
    scores = generator.score(valid)
    final = [row for row in workdir_metrics(workdir) if row["kind"] == "eval"][-1]
    nll = -sum(total for total, _ in scores) / sum(count for _, count in scores)
    assert nll == pytest.approx(final["nll"], rel=1e-3)  # the same model, checkpoint and tokens as eval's


@pytest.mark.slow  # trains a language model (the module fixture)
def test_generate_cli_writes_samples_and_refuses_bad_options(lm_workdir):
    workdir, _ = lm_workdir
    result = run_cli("generate", "--workdir", workdir, "--prompt", "m n", "--max_length", "8", "--num_samples", "2",
                     "--temperature", "0.7", "--top_k", "5", "--seed", "3")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2 and all(line.startswith("m n") for line in lines)
    result = run_cli("generate", "--workdir", workdir, "--max_length", "6", "--temperature", "0", stdin=b"b c\n\nd f\n")
    assert result.returncode == 0 and len(result.stdout.decode().splitlines()) == 3  # an empty prompt: from nothing
    assert_clear_error(run_cli("generate", "--workdir", workdir, "--prompt", "b", "--top_p", "1.5"), "--top_p")
    assert_clear_error(run_cli("generate", "--workdir", workdir, "--prompt", "b", "--beam_size", "2",
                               "--num_samples", "3"), "--num_samples")
    assert_clear_error(run_cli("decode", "--workdir", workdir, stdin=b"b c\n"), "language model", "generate")


def test_generate_refuses_a_translation_workdir(train_workdir):
    workdir = train_workdir("lm_refuse", "--config", "configs/reverse.py", *config_flags(
        model=TINY_MODEL, data={**TINY_DATA, "batch_tokens": 256}, train={"steps": 1, "eval_every": 1000}))
    assert_clear_error(run_cli("generate", "--workdir", workdir, "--prompt", "1 2"), "translation model", "decode")


def test_data_sides_must_match_the_model_kind_and_lines_must_be_there(tmp_path):
    write_lines(tmp_path / "a.txt", ["a b", "c d"])
    write_lines(tmp_path / "empty.txt", ["", "  "])
    one_sided = [f"--config.data.train=text:{tmp_path}/a.txt", f"--config.data.eval=text:{tmp_path}/a.txt"]
    pairs = [f"--config.data.train=text:{tmp_path}/a.txt,{tmp_path}/a.txt",
             f"--config.data.eval=text:{tmp_path}/a.txt,{tmp_path}/a.txt"]
    workdir = str(tmp_path / "w")
    assert_clear_error(run_cli("train", "--config", "configs/lm.py", "--workdir", workdir, *LM_FLAGS, *pairs),
                       "decoder_only", "one-sided")
    assert_clear_error(run_cli("train", "--config", "configs/multi30k.py", "--workdir", workdir, *one_sided),
                       "no source side", "decoder_only")
    empty = [f"--config.data.train=text:{tmp_path}/empty.txt", f"--config.data.eval=text:{tmp_path}/a.txt"]
    assert_clear_error(run_cli("train", "--config", "configs/lm.py", "--workdir", workdir, *LM_FLAGS, *empty),
                       "no non-empty line")
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))


def test_lm1b_config_reads_one_sided_tfds_text_on_mock_data(tmp_path):
    """configs/lm1b.py's data (tfds:lm1b, feature 'text', no source) on a mocked lm1b: packed one-sided training
    rows (inputs empty, sentences in the targets) and eval pairs with an empty source."""
    tfds = pytest.importorskip("tensorflow_datasets")
    tf = pytest.importorskip("tensorflow")
    from t2t_jax.data import pipeline

    sentences = alternating(64, seed=2)

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"text": sentences})

    config = load_config(os.path.join(ROOT, "configs/lm1b.py"))
    config.data.update(vocab_size=32, vocab_sample_lines=1000, pack_length=32, batch_tokens=128, shuffle_buffer=64)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        tokenizer = pipeline.build_vocabulary(config.data, str(tmp_path), process_index=0)
        batch = next(pipeline.train_iterator(config.data, tokenizer, process_index=0, process_count=1))
        pairs = pipeline.eval_pairs(config.data, max_examples=5)
    assert batch["targets"].shape == (4, 32) and not batch["inputs"].any()
    assert batch["targets_segmentation"].max() >= 2  # several sentences packed per row
    first = batch["targets"][0][batch["targets_segmentation"][0] == 1]
    assert tokenizer.decode(first) in sentences
    assert pairs == [("", sentence) for sentence in sentences[:5]]


@pytest.mark.slow  # times and compiles the step of configs/lm.py
def test_bench_and_plan_take_a_decoder_only_config(tmp_path):
    """The train step of configs/lm.py times (`bench`, no beam search: that is translation's) and compiles ahead
    of time (`plan`), with FLOPs counted for the decoder alone."""
    result = run_cli("bench", "--config", "configs/lm.py", "--steps", "1", "--batch", "2", "--length", "16",
                     "--vocab", "64", "--json", str(tmp_path / "bench.json"))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["train"]["model_flops_per_step"] > 0 and "decode" not in bench
    result = run_cli("plan", "--config", "configs/lm.py", "--target", "cpu", "--no_search",
                     "--json", str(tmp_path / "plan.json"))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["fits"] and "decode_peak_gib" not in plan
