"""Algorithmic tasks: correct answers, deterministic per seed, separate eval stream, fixed vocabulary."""

import pytest
from conftest import data_config as config

from t2t_jax.data import pipeline
from t2t_jax.data.algorithmic import EVAL_STREAM, TRAIN_STREAM, algorithmic_dataset


def pairs(task, seed=0, stream=TRAIN_STREAM, count=300, min_length=1, max_length=20):
    dataset = algorithmic_dataset(task, seed=seed, stream=stream, min_length=min_length, max_length=max_length,
                                  num_examples=count)
    return [(s.decode(), t.decode()) for s, t in dataset.as_numpy_iterator()]


def digits(text):
    return text.split(" ")


def expected(task, source):
    if task == "copy":
        return source
    if task == "reverse":
        return " ".join(reversed(digits(source)))
    if task == "sort":
        return " ".join(sorted(digits(source)))
    left, right = source.replace(" ", "").split("+")
    return " ".join(str(int(left) + int(right)))


@pytest.mark.parametrize("task", ["copy", "reverse", "sort", "addition"])
def test_answers_are_correct(task):
    examples = pairs(task, max_length=25)
    for source, target in examples:
        assert target == expected(task, source), source
    if task != "addition":
        lengths = {len(digits(source)) for source, _ in examples}
        assert min(lengths) == 1 and max(lengths) == 25


def test_format_and_examples():
    source, target = pairs("addition", count=1)[0]
    assert set(source) <= set("0123456789+ ")
    left, right = source.split(" + ")
    assert not left.startswith("0") or left == "0"
    assert pairs("addition", count=50, min_length=30, max_length=30)  # numbers beyond int64 still add up


def test_deterministic_per_seed_and_stream():
    assert pairs("reverse", seed=3) == pairs("reverse", seed=3)
    assert pairs("reverse", seed=3) != pairs("reverse", seed=4)
    assert pairs("reverse", stream=EVAL_STREAM) != pairs("reverse", stream=TRAIN_STREAM)


def test_pipeline_with_fixed_vocabulary(tmp_path):
    cfg = config(train="algorithmic:reverse", eval="algorithmic:reverse", algorithmic_max_length=6,
                 algorithmic_eval_examples=10, batch_size=8)
    tokenizer = pipeline.build_vocabulary(cfg, str(tmp_path), process_index=0)
    assert (tmp_path / "vocab.model").is_file() and tokenizer.vocab_size == 14
    batch = next(pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1))
    for inputs, targets in zip(batch["inputs"], batch["targets"], strict=True):
        assert tokenizer.decode(targets) == expected("reverse", tokenizer.decode(inputs))
    eval_pairs = pipeline.eval_pairs(cfg)
    assert len(eval_pairs) == 10 and eval_pairs == pipeline.eval_pairs(cfg)
    assert all(target == expected("reverse", source) for source, target in eval_pairs)
    eval_batches = list(pipeline.eval_batches(cfg, tokenizer, batch_size=4, process_index=0, process_count=1))
    assert len(eval_batches) == 3
    assert tokenizer.decode(eval_batches[0]["inputs"][0]) == eval_pairs[0][0]


def test_hosts_get_disjoint_examples(tmp_path):
    cfg = config(train="algorithmic:copy", algorithmic_min_length=10, algorithmic_max_length=12, batch_size=16)
    tokenizer = pipeline.build_vocabulary(cfg, str(tmp_path), process_index=0)

    def rows(process_index):
        batches = pipeline.train_iterator(cfg, tokenizer, process_index=process_index, process_count=2)
        return {tuple(row) for _ in range(4) for row in next(batches)["inputs"]}

    assert not rows(0) & rows(1)
