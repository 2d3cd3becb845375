"""Bad input gives one clear UserError; empty and overlong lines are handled as documented (train vs eval)."""

import functools
import logging

import ml_collections
import numpy as np
import pytest
from conftest import data_config, sentences, write_lines

from t2t_jax.data import pipeline
from t2t_jax.data.tokenizer import Tokenizer, train_tokenizer
from t2t_jax.errors import UserError

config = functools.partial(data_config, shuffle_buffer=100, batch_tokens=256)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.model"
    return train_tokenizer(sentences(300, 0) + sentences(300, 1), str(path), vocab_size=60)


@pytest.fixture
def pair(tmp_path):
    return write_lines(tmp_path / "a.en", sentences(20, 2)), write_lines(tmp_path / "a.de", sentences(20, 3))


def every_use(uri, tokenizer):
    """The API calls that read a data URI, each given that URI."""
    return {
        "train": lambda: pipeline.train_iterator(config(train=uri), tokenizer, process_index=0, process_count=1),
        "eval_pairs": lambda: pipeline.eval_pairs(config(eval=uri)),
        "eval_batches": lambda: pipeline.eval_batches(config(eval=uri), tokenizer, batch_size=4, process_index=0,
                                                      process_count=1),
    }


def assert_user_error(uri, tokenizer, *words):
    for use, call in every_use(uri, tokenizer).items():
        with pytest.raises(UserError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message, use
        for word in words:
            assert word in message, f"{use}: {word!r} not in {message!r}"


def test_missing_file(tmp_path, pair, tokenizer):
    missing = str(tmp_path / "missing.de")
    assert_user_error(f"text:{pair[0]},{missing}", tokenizer, "not found", missing)


def test_line_count_mismatch_names_both_files_and_counts(tmp_path, pair, tokenizer):
    short = write_lines(tmp_path / "short.de", sentences(17, 4))
    assert_user_error(f"text:{pair[0]},{short}", tokenizer, pair[0], "20 lines", short, "17 lines")
    assert_user_error(f"text:{short},{pair[1]}", tokenizer, short, "17 lines", pair[1], "20 lines")


def test_invalid_utf8_names_file_and_line(tmp_path, pair, tokenizer):
    broken = tmp_path / "broken.de"
    broken.write_bytes(b"ein Hund\nzwei \xff Katzen\n" + b"drei\n" * 18)
    assert_user_error(f"text:{pair[0]},{broken}", tokenizer, str(broken), "line 2", "UTF-8")


def test_empty_file(tmp_path, pair, tokenizer):
    empty = tmp_path / "empty.de"
    empty.write_bytes(b"")
    assert_user_error(f"text:{pair[0]},{empty}", tokenizer, "empty", str(empty))


def test_tsv_line_without_tab(tmp_path, tokenizer):
    path = write_lines(tmp_path / "x.tsv", ["a dog\tein Hund", "a cat\teine Katze", "no tab here"])
    assert_user_error(f"tsv:{path}", tokenizer, path, "line 3", "0 TAB")


def test_unknown_scheme_and_task(tokenizer):
    assert_user_error("parquet:x.parquet", tokenizer, "unknown data URI")
    assert_user_error("algorithmic:multiply", tokenizer, "unknown algorithmic task 'multiply'")


def test_missing_required_field(tokenizer):
    with pytest.raises(UserError, match="data.train is not set"):
        pipeline.train_iterator(config(train=""), tokenizer, process_index=0, process_count=1)
    with pytest.raises(UserError, match="data.eval is not set"):
        pipeline.eval_pairs(ml_collections.ConfigDict({"train": "algorithmic:copy"}))


def test_bad_field_values(pair, tokenizer):
    uri = f"text:{pair[0]},{pair[1]}"
    with pytest.raises(UserError, match="data.max_source_length must be positive"):
        pipeline.train_iterator(config(train=uri, max_source_length=0), tokenizer, process_index=0, process_count=1)
    with pytest.raises(UserError, match="data.batch_tokens=256 is too small"):
        pipeline.train_iterator(config(train=uri), tokenizer, batch_multiple=2, process_index=0, process_count=1)
    with pytest.raises(UserError, match="data.batch_size=6 is not a multiple of 4"):
        pipeline.train_iterator(config(train=uri, batch_size=6), tokenizer, batch_multiple=4, process_index=0,
                                process_count=1)


def test_training_skips_empty_lines_with_a_warning(tmp_path, tokenizer, caplog):
    sources = sentences(12, 5)
    targets = sentences(12, 6)
    sources[3], targets[7], targets[9] = "", "   ", ""
    uri = f"text:{write_lines(tmp_path / 's.en', sources)},{write_lines(tmp_path / 't.de', targets)}"
    with caplog.at_level(logging.WARNING):
        batches = pipeline.train_iterator(config(train=uri, batch_size=4), tokenizer, process_index=0,
                                          process_count=1)
    assert "skipping 3 of 12 training line pairs" in caplog.text
    seen = {tuple(row[row > 0]) for _ in range(9) for row in next(batches)["inputs"]}
    expected = {tuple(tokenizer.encode(s) + [1]) for i, s in enumerate(sources) if i not in (3, 7, 9)}
    assert seen == expected


def test_training_with_only_empty_lines(tmp_path, tokenizer):
    uri = f"text:{write_lines(tmp_path / 's.en', ['', ' '])},{write_lines(tmp_path / 't.de', ['a', 'b'])}"
    with pytest.raises(UserError, match="no line pair with both sides non-empty"):
        pipeline.train_iterator(config(train=uri), tokenizer, process_index=0, process_count=1)


def test_training_ran_out_when_every_example_is_too_long(pair, tokenizer):
    batches = pipeline.train_iterator(config(train=f"text:{pair[0]},{pair[1]}", max_target_length=2), tokenizer,
                                      process_index=0, process_count=1)
    with pytest.raises(UserError, match="ran out.*max_target_length"):
        next(batches)


def test_eval_keeps_empty_lines_and_truncates_with_a_warning(tmp_path, tokenizer, caplog):
    sources = ["a dog", "", "the man walks with the big black dog in the park on the road"]
    targets = ["ein Hund", "leer", ""]
    uri = f"text:{write_lines(tmp_path / 'e.en', sources)},{write_lines(tmp_path / 'e.de', targets)}"
    assert pipeline.eval_pairs(config(eval=uri)) == list(zip(sources, targets, strict=True))
    with caplog.at_level(logging.WARNING):
        batches = list(pipeline.eval_batches(config(eval=uri, max_source_length=8), tokenizer, batch_size=2,
                                             process_index=0, process_count=1))
    assert "truncated 1 of 3 eval sources longer than 8 tokens" in caplog.text
    assert [b["inputs"].shape for b in batches] == [(2, 8), (2, 8)]
    inputs = np.concatenate([b["inputs"] for b in batches])
    targets_ids = np.concatenate([b["targets"] for b in batches])
    assert list(inputs[1]) == [Tokenizer.EOS_ID] + [0] * 7  # the empty line is kept: EOS only
    assert inputs[2, 7] == Tokenizer.EOS_ID and np.all(inputs[2] > 0)  # truncated to 7 ids + EOS
    assert list(inputs[2, :7]) == tokenizer.encode(sources[2])[:7]
    assert targets_ids[2, 0] == Tokenizer.EOS_ID
    assert not inputs[3].any() and not targets_ids[3].any()  # filler row
