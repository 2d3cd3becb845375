"""The real Multi30k files through the whole data API (skipped when ../shared/data is absent)."""

import pathlib

import ml_collections
import numpy as np
import pytest
from conftest import data_config

from t2t_jax.data import pipeline
from t2t_jax.errors import UserError

MULTI30K = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multi30k"
pytestmark = pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"real data not found at {MULTI30K}")


def uri(split):
    return f"text:{MULTI30K / split}.en,{MULTI30K / split}.de"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = data_config(train=uri("train"), eval=uri("valid"), vocab_size=4000, vocab_sample_lines=20_000,
                      shuffle_buffer=2000)
    tokenizer = pipeline.build_vocabulary(cfg, str(tmp_path_factory.mktemp("workdir")), process_index=0)
    return cfg, tokenizer


def test_training_batches_are_real_sentences(setup):
    cfg, tokenizer = setup
    sources = set((MULTI30K / "train.en").read_text(encoding="utf-8").splitlines())
    batch = next(pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1))
    assert batch["inputs"].shape[0] * batch["inputs"].shape[1] <= cfg.batch_tokens
    decoded = [tokenizer.decode(row) for row in batch["inputs"]]
    assert sum(line in sources for line in decoded) >= 0.9 * len(decoded)  # NFKC may change a few characters


def test_packed_padding_is_low(setup):
    cfg, tokenizer = setup
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.packing = True
    batches = pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1)
    segmentation = np.concatenate([next(batches)["targets_segmentation"] for _ in range(10)])
    assert (segmentation == 0).mean() < 0.05


def test_eval_keeps_every_line(setup):
    cfg, tokenizer = setup
    pairs = pipeline.eval_pairs(cfg)
    assert len(pairs) == 1014
    batches = list(pipeline.eval_batches(cfg, tokenizer, batch_size=128, process_index=0, process_count=1))
    assert len(batches) == 8
    rows = np.concatenate([b["targets"] for b in batches])
    assert (rows[:1014] == 1).sum() == 1014 and not rows[1014:].any()


def test_tsv_with_a_tab_inside_a_sentence(tmp_path):
    english = (MULTI30K / "train.en").read_text(encoding="utf-8").splitlines()
    german = (MULTI30K / "train.de").read_text(encoding="utf-8").splitlines()
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"{e}\t{g}\n" for e, g in zip(english, german, strict=True)), encoding="utf-8")
    cfg = ml_collections.ConfigDict({"eval": f"tsv:{tsv}"})
    with pytest.raises(UserError, match="train.tsv line 7366 has 2 TAB characters"):
        pipeline.eval_pairs(cfg)
