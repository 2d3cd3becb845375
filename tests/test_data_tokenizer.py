"""Tokenizer: SentencePiece training and loading, T2T special ids, decode rules, the fixed algorithmic vocab."""

import functools
import os

import conftest
import numpy as np
import pytest

from t2t_jax.data.tokenizer import Tokenizer, train_tokenizer, write_algorithmic_vocabulary
from t2t_jax.errors import UserError

sentences = functools.partial(conftest.sentences, words=(3, 10))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.model"
    return train_tokenizer(sentences(400), str(path), vocab_size=80)


def test_train_writes_model_with_t2t_ids(tokenizer):
    assert os.path.isfile(tokenizer.path)
    assert tokenizer.vocab_size == 80
    assert tokenizer.pieces([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert Tokenizer.load(tokenizer.path).vocab_size == 80


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_encode_decode_round_trip(tmp_path, model_type):
    tok = train_tokenizer(sentences(400), str(tmp_path / "v.model"), vocab_size=50, model_type=model_type)
    text = "the big dog runs in the park"
    ids = tok.encode(text)
    assert Tokenizer.EOS_ID not in ids and Tokenizer.PAD_ID not in ids
    assert tok.decode(ids) == text
    assert tok.encode_batch([text, "a cat"]) == [ids, tok.encode("a cat")]


def test_decode_stops_at_eos_and_ignores_pad(tokenizer):
    ids = tokenizer.encode("a red ball")
    assert tokenizer.decode([*ids, Tokenizer.EOS_ID, *tokenizer.encode("the house"), 0, 0]) == "a red ball"
    assert tokenizer.decode(np.array([0, *ids, 0, 0], np.int32)) == "a red ball"


def test_decode_maps_ids_outside_vocab_to_unk(tokenizer):
    assert tokenizer.decode([tokenizer.vocab_size + 5]) == tokenizer.decode([Tokenizer.UNK_ID])


def test_algorithmic_vocabulary_one_piece_per_symbol(tmp_path):
    tok = write_algorithmic_vocabulary(str(tmp_path / "vocab.model"))
    assert tok.vocab_size == 14
    ids = tok.encode("1 2 + 3 4")
    assert ids == [4, 5, 13, 6, 7]
    assert tok.decode([*ids, 1]) == "1 2 + 3 4"
    assert tok.pieces(ids)[2] == "\u2581+"


def test_load_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found.*nope.model"):
        Tokenizer.load(str(tmp_path / "nope.model"))


def test_load_garbage_file(tmp_path):
    path = tmp_path / "bad.model"
    path.write_bytes(b"not a model")
    with pytest.raises(UserError, match="bad.model is not a SentencePiece model"):
        Tokenizer.load(str(path))


def test_load_rejects_other_special_ids(tmp_path):
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences(200)), model_writer=model, vocab_size=40,
                                   minloglevel=2)  # SentencePiece defaults: unk 0, bos 1, eos 2, no pad
    path = tmp_path / "default_ids.model"
    path.write_bytes(model.getvalue())
    with pytest.raises(UserError, match="default_ids.model does not use the T2T ids"):
        Tokenizer.load(str(path))


def test_vocab_too_large_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Vocabulary size too high"):
        train_tokenizer(sentences(50), str(tmp_path / "v.model"), vocab_size=5000)


def test_tokenizer_and_package_import_without_tensorflow():
    loaded = conftest.modules_loaded("t2t_jax.data, t2t_jax.data.tokenizer", "m == 'tensorflow'")
    assert loaded == [], "tensorflow imported"
