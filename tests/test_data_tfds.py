"""tfds: URIs, with tfds.testing.mock_data (no download): vocabulary, training batches, eval, bad names."""

import functools

import numpy as np
import pytest
from conftest import data_config

from t2t_jax.data import pipeline
from t2t_jax.errors import UserError

tfds = pytest.importorskip("tensorflow_datasets")
config = functools.partial(data_config, train="tfds:wmt14_translate/de-en",
                           eval="tfds:wmt14_translate/de-en?split=test", vocab_size=40, shuffle_buffer=64,
                           batch_size=8, max_source_length=512, max_target_length=512)


def test_mocked_wmt14(tmp_path):
    cfg = config()
    with tfds.testing.mock_data(num_examples=40):
        tokenizer = pipeline.build_vocabulary(cfg, str(tmp_path), process_index=0)
        assert tokenizer.vocab_size == 40 and (tmp_path / "vocab.model").is_file()
        batches = pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1)
        first = [next(batches) for _ in range(3)]
        pairs = pipeline.eval_pairs(cfg, max_examples=10)
        eval_batches = list(pipeline.eval_batches(cfg, tokenizer, batch_size=4, max_examples=10, process_index=0,
                                                  process_count=1))
    for batch in first:
        assert batch["inputs"].shape[0] == 8 and batch["inputs"].dtype == np.int32
        assert (batch["targets"] == 1).sum() == 8  # one EOS per row
    assert len(pairs) == 10 and all(isinstance(s, str) and isinstance(t, str) for s, t in pairs)
    assert len(eval_batches) == 3
    assert tokenizer.decode(eval_batches[0]["inputs"][0]) == tokenizer.decode(tokenizer.encode(pairs[0][0]))


def test_unknown_dataset_name():
    with pytest.raises(UserError, match="unknown TFDS dataset 'no_such_dataset/x'"):
        pipeline.eval_pairs(config(eval="tfds:no_such_dataset/x"))


def test_unknown_config():
    with pytest.raises(UserError, match="unknown TFDS dataset 'wmt14_translate/xx-en'"):
        pipeline.eval_pairs(config(eval="tfds:wmt14_translate/xx-en"))


def test_language_not_in_dataset():
    with pytest.raises(UserError, match="data.source_lang='fr' is not a feature of TFDS wmt14_translate/de-en"):
        pipeline.eval_pairs(config(source_lang="fr"))
