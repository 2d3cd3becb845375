"""build_vocabulary: train, reuse, user-supplied models, fixed algorithmic vocab, multi-host waiting."""

import functools
import threading

import conftest
import pytest
from conftest import write_lines

from t2t_jax.data import vocabulary
from t2t_jax.data.pipeline import build_vocabulary
from t2t_jax.data.tokenizer import train_tokenizer, write_algorithmic_vocabulary
from t2t_jax.errors import UserError

config = conftest.data_config
sentences = functools.partial(conftest.sentences, words=(2, 9))


@pytest.fixture(scope="module")
def train_uri(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    english = write_lines(directory / "t.en", sentences(200, 0))
    german = write_lines(directory / "t.de", sentences(200, 1))
    return f"text:{english},{german}"


def test_trains_then_reuses(train_uri, tmp_path):
    cfg = config(train=train_uri, vocab_size=60)
    tokenizer = build_vocabulary(cfg, str(tmp_path), process_index=0)
    model = tmp_path / "vocab.model"
    assert tokenizer.path == str(model) and tokenizer.vocab_size == 60
    first = model.read_bytes()
    cfg.train = "text:/no/longer/there.en,/no/longer/there.de"  # resume and decode never read the data again
    assert build_vocabulary(cfg, str(tmp_path), process_index=0).vocab_size == 60
    assert model.read_bytes() == first


def test_training_is_deterministic(train_uri, tmp_path):
    for name in ("a", "b"):
        build_vocabulary(config(train=train_uri, vocab_size=60, vocab_model_type="unigram"), str(tmp_path / name),
                         process_index=0)
    assert (tmp_path / "a" / "vocab.model").read_bytes() == (tmp_path / "b" / "vocab.model").read_bytes()


def test_resume_with_other_vocab_size(train_uri, tmp_path):
    build_vocabulary(config(train=train_uri, vocab_size=60), str(tmp_path), process_index=0)
    with pytest.raises(UserError, match="data.vocab_size=50 but .*vocab.model has 60 pieces"):
        build_vocabulary(config(train=train_uri, vocab_size=50), str(tmp_path), process_index=0)


def test_supplied_model_is_copied_and_checked(train_uri, tmp_path):
    supplied = train_tokenizer(sentences(200, 2), str(tmp_path / "mine.model"), vocab_size=55)
    cfg = config(train=train_uri, vocab_path=supplied.path, vocab_size=55)
    tokenizer = build_vocabulary(cfg, str(tmp_path / "run"), process_index=0)
    assert (tmp_path / "run" / "vocab.model").read_bytes() == (tmp_path / "mine.model").read_bytes()
    assert tokenizer.vocab_size == 55
    with pytest.raises(UserError, match=r"data.vocab_size=32000 but data.vocab_path=.*mine.model has 55 pieces"):
        build_vocabulary(config(train=train_uri, vocab_path=supplied.path), str(tmp_path / "run2"), process_index=0)
    assert not (tmp_path / "run2" / "vocab.model").exists()  # failed before writing anything
    other = train_tokenizer(sentences(200, 3), str(tmp_path / "other.model"), vocab_size=55)
    with pytest.raises(UserError, match="differs from data.vocab_path"):
        build_vocabulary(config(train=train_uri, vocab_path=other.path, vocab_size=55), str(tmp_path / "run"),
                         process_index=0)
    with pytest.raises(UserError, match="not found"):
        build_vocabulary(config(train=train_uri, vocab_path=str(tmp_path / "nope.model")), str(tmp_path / "run3"),
                         process_index=0)


def test_algorithmic_vocabulary(tmp_path):
    tokenizer = build_vocabulary(config(train="algorithmic:addition@2;algorithmic:sort"), str(tmp_path),
                                 process_index=0)
    assert tokenizer.vocab_size == 14
    with pytest.raises(UserError, match="mixes algorithmic"):
        build_vocabulary(config(train="algorithmic:copy;text:a,b"), str(tmp_path), process_index=0)


def test_other_processes_wait_for_process_0(tmp_path, monkeypatch):
    monkeypatch.setattr(vocabulary, "_POLL_SECONDS", 0.05)
    cfg = config(train="algorithmic:copy")
    writer = threading.Timer(0.3, write_algorithmic_vocabulary, [str(tmp_path / "vocab.model")])
    writer.start()
    assert build_vocabulary(cfg, str(tmp_path), process_index=1, wait_timeout_s=30).vocab_size == 14
    writer.join()
    with pytest.raises(UserError, match="process 2 waited 0 s for .*vocab.model from process 0"):
        build_vocabulary(cfg, str(tmp_path / "empty"), process_index=2, wait_timeout_s=0.2)


def test_sample_lines_is_seeded_and_sized():
    pairs = [(f"s{i}", f"t{i}") for i in range(1000)] + [("", "x"), ("y", " ")]
    sample = vocabulary.sample_lines(pairs, 101, seed=0)
    assert len(sample) == 102 and sample == vocabulary.sample_lines(pairs, 101, seed=0)
    assert sample != vocabulary.sample_lines(pairs, 101, seed=1)
    assert {line[1:] for line in sample[0::2]} == {line[1:] for line in sample[1::2]}  # both sides of each pair
    assert vocabulary.sample_lines(pairs[:10], 100, seed=0) == [line for pair in pairs[:10] for line in pair]
