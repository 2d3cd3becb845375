"""Training batches: determinism, exact resume, bucketing shapes and budget, packing, fixed batch size, mixing."""

import collections
import functools

import numpy as np
import pytest
from conftest import data_config, sentences, write_lines

from t2t_jax.data import batching, pipeline
from t2t_jax.data.packing import ROW_FEATURES, pack_group
from t2t_jax.data.tokenizer import Tokenizer, train_tokenizer
from t2t_jax.errors import UserError


def write_corpus(directory, name, count, seed):
    sources = sentences(count, seed, words=(1, 14))
    targets = [" ".join(reversed(s.split())) + " ok" for s in sources]
    english = write_lines(directory / f"{name}.en", sources)
    german = write_lines(directory / f"{name}.de", targets)
    return f"text:{english},{german}", sources, targets


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    uri, sources, targets = write_corpus(directory, "train", 300, 0)
    other_uri, _, _ = write_corpus(directory, "other", 300, 1)
    tokenizer = train_tokenizer(sources + targets, str(directory / "vocab.model"), vocab_size=70)
    pairs = list(zip(sources, targets, strict=True))
    return {"uri": uri, "other_uri": other_uri, "tokenizer": tokenizer, "pairs": pairs}


config = functools.partial(data_config, shuffle_buffer=128, batch_tokens=512, pack_length=64)


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def iterator(corpus, cfg, **kwargs):
    return pipeline.train_iterator(cfg, corpus["tokenizer"], process_index=0, process_count=1, **kwargs)


MODES = {
    "bucketing": {},
    "fixed_batch_size": {"batch_size": 8},
    "packing": {"packing": True},
}


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_batches(corpus, mode):
    cfg = config(train=corpus["uri"], **MODES[mode])
    assert_same_batches(take(iterator(corpus, cfg), 12), take(iterator(corpus, cfg), 12))
    other_seed = take(iterator(corpus, cfg, seed=1), 3)
    assert any(a["targets"].shape != b["targets"].shape or (a["targets"] != b["targets"]).any()
               for a, b in zip(take(iterator(corpus, cfg), 3), other_seed, strict=True))


@pytest.mark.parametrize("mode", [*MODES, "mixture"])
def test_resume_gives_exactly_the_next_batches(corpus, mode, tmp_path):
    train = f"{corpus['uri']}@3;{corpus['other_uri']}" if mode == "mixture" else corpus["uri"]
    cfg = config(train=train, **MODES.get(mode, {}))
    batches = iterator(corpus, cfg)
    take(batches, 25)  # several epochs of this small corpus: shuffle buffers and open buckets/rows are mid-way
    batches.save(str(tmp_path / "process_0"))
    expected = take(batches, 8)
    resumed = iterator(corpus, cfg)
    resumed.restore(str(tmp_path / "process_0"))
    assert_same_batches(take(resumed, 8), expected)


def test_restore_errors(corpus, tmp_path):
    batches = iterator(corpus, config(train=corpus["uri"]))
    with pytest.raises(UserError, match="no saved data-iterator position"):
        batches.restore(str(tmp_path / "nothing"))
    batches.save(str(tmp_path / "saved"))
    packed = iterator(corpus, config(train=corpus["uri"], packing=True))
    with pytest.raises(UserError, match="does not fit this data pipeline"):
        packed.restore(str(tmp_path / "saved"))


def test_bucketing_shapes_and_budget(corpus):
    cfg = config(train=corpus["uri"], batch_tokens=512, max_source_length=64, max_target_length=64)
    plan = batching.plan_buckets(64, batch_tokens=512, batch_size=0, batch_multiple=4)
    shapes = collections.Counter()
    for batch in take(iterator(corpus, cfg, batch_multiple=4), 60):
        batch_size, length = batch["inputs"].shape
        assert batch["targets"].shape == (batch_size, length)
        assert length in plan.lengths and batch_size == plan.batch_sizes[plan.lengths.index(length)]
        assert batch_size * length <= 512 and batch_size % 4 == 0
        longer_side = np.maximum((batch["inputs"] > 0).sum(axis=1), (batch["targets"] > 0).sum(axis=1))
        assert longer_side.min() > 0  # no filler rows in training
        smallest_fit = [min(b for b in plan.lengths if b >= n) for n in longer_side]
        assert smallest_fit == [length] * batch_size
        shapes[batch["inputs"].shape] += 1
    assert len(shapes) >= 2 and len({length for _, length in shapes}) == len(shapes)  # one shape per bucket


def test_bucket_lengths_grow_like_t2t():
    assert batching.bucket_lengths(40) == (8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28, 30,
                                           33, 36, 39, 40)
    assert batching.bucket_lengths(5) == (5,)
    assert len(batching.bucket_lengths(256)) < 45


def test_fixed_batch_size(corpus):
    for batch in take(iterator(corpus, config(train=corpus["uri"], batch_size=8)), 20):
        assert batch["inputs"].shape[0] == 8 == batch["targets"].shape[0]


def test_batches_are_examples_of_the_corpus(corpus):
    tokenizer = corpus["tokenizer"]
    known = {(tuple(tokenizer.encode(s) + [1]), tuple(tokenizer.encode(t) + [1])) for s, t in corpus["pairs"]}
    for batch in take(iterator(corpus, config(train=corpus["uri"])), 10):
        assert batch["inputs"].dtype == np.int32 == batch["targets"].dtype
        for inputs, targets in zip(batch["inputs"], batch["targets"], strict=True):
            assert (tuple(inputs[inputs > 0]), tuple(targets[targets > 0])) in known


def segments(row, side):
    """{segment id: (ids, positions)} of one packed row."""
    found = {}
    for segment in np.unique(row[f"{side}_segmentation"]):
        if segment:
            mask = row[f"{side}_segmentation"] == segment
            found[int(segment)] = (tuple(row[side][mask]), tuple(row[f"{side}_position"][mask]))
    return found


def test_packed_rows_are_well_formed(corpus):
    tokenizer = corpus["tokenizer"]
    known = {(tuple(tokenizer.encode(s) + [1]), tuple(tokenizer.encode(t) + [1])) for s, t in corpus["pairs"]}
    cfg = config(train=corpus["uri"], packing=True, batch_tokens=512, pack_length=64)
    filled = total = 0
    for batch in take(iterator(corpus, cfg, batch_multiple=4), 10):
        assert set(batch) == set(ROW_FEATURES)
        assert all(value.shape == (8, 64) and value.dtype == np.int32 for value in batch.values())
        for index in range(8):
            row = {name: value[index] for name, value in batch.items()}
            inputs, targets = segments(row, "inputs"), segments(row, "targets")
            assert sorted(inputs) == sorted(targets) == list(range(1, len(inputs) + 1))
            for side in ("inputs", "targets"):
                segmentation = row[f"{side}_segmentation"]
                used = int((segmentation > 0).sum())
                assert (segmentation[:used] > 0).all() and not segmentation[used:].any()  # padding at the end
                assert np.all(np.diff(segmentation[:used]) >= 0)  # examples are contiguous
                assert not row[side][used:].any() and not row[f"{side}_position"][used:].any()
            for segment in inputs:
                assert (inputs[segment][0], targets[segment][0]) in known  # whole examples, never split
                for ids, positions in (inputs[segment], targets[segment]):
                    assert positions == tuple(range(len(ids)))
            filled += int((row["targets_segmentation"] > 0).sum())
            total += 64
    assert filled / total > 0.85


def test_pack_group_keeps_every_token():
    rng = np.random.default_rng(0)
    examples = [(rng.integers(3, 50, rng.integers(1, 16)), rng.integers(3, 50, rng.integers(1, 16)))
                for _ in range(200)]
    state = (np.zeros([4, 6, 32], np.int32), np.zeros([4, 2], np.int32), np.zeros([4], np.int32))
    rows = []
    for start in range(0, 200, 50):
        group = examples[start:start + 50]
        inputs = np.zeros([50, 16], np.int32)
        targets = np.zeros([50, 16], np.int32)
        for i, (source, target) in enumerate(group):
            inputs[i, :len(source)], targets[i, :len(target)] = source, target
        lengths = [np.array([len(s) for s, _ in group], np.int32), np.array([len(t) for _, t in group], np.int32)]
        *state, emitted = pack_group(*state, inputs, lengths[0], targets, lengths[1], pack_length=32)
        rows.extend(emitted)
    rows.extend(state[0])  # the rows still open
    packed = collections.Counter()
    for row in rows:
        row = dict(zip(ROW_FEATURES, row, strict=True))
        inputs, targets = segments(row, "inputs"), segments(row, "targets")
        packed.update((inputs[s][0], targets[s][0]) for s in inputs)
    assert packed == collections.Counter((tuple(s), tuple(t)) for s, t in examples)


def test_mixture_follows_weights(corpus):
    tokenizer = corpus["tokenizer"]
    first = {tuple(tokenizer.encode(s) + [1]) for s, _ in corpus["pairs"]}
    cfg = config(train=f"{corpus['uri']}@3;{corpus['other_uri']}@1", batch_size=16)
    rows = [tuple(row[row > 0]) for batch in take(iterator(corpus, cfg), 25) for row in batch["inputs"]]
    share = sum(row in first for row in rows) / len(rows)
    assert 0.65 < share < 0.85


def test_hosts_get_disjoint_shards(corpus):
    cfg = config(train=corpus["uri"], batch_size=10, shuffle_buffer=1000)

    def rows(process_index):
        batches = pipeline.train_iterator(cfg, corpus["tokenizer"], process_index=process_index, process_count=2)
        return {tuple(row[row > 0]) for batch in take(batches, 14) for row in batch["inputs"]}

    first, second = rows(0), rows(1)
    all_sources = {tuple(corpus["tokenizer"].encode(s) + [1]) for s, _ in corpus["pairs"]}
    assert len(first) > 100 and len(second) > 100
    assert first | second <= all_sources
    duplicates = {tuple(corpus["tokenizer"].encode(s) + [1]) for s, n in
                  collections.Counter(s for s, _ in corpus["pairs"]).items() if n > 1}
    assert not (first & second) - duplicates


def test_eval_batches_fixed_shapes_and_process_shards(corpus):
    cfg = config(eval=corpus["uri"])
    everything = list(pipeline.eval_batches(cfg, corpus["tokenizer"], batch_size=32, process_index=0,
                                            process_count=1))
    assert len(everything) == 10 and len({b["inputs"].shape for b in everything}) == 1
    assert everything[0]["inputs"].shape[1] % 8 == 0
    rows = np.concatenate([b["inputs"] for b in everything])
    assert (rows[:300] > 0).any(axis=1).all() and not rows[300:].any()
    shards = [list(pipeline.eval_batches(cfg, corpus["tokenizer"], batch_size=32, process_index=i,
                                         process_count=2)) for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    np.testing.assert_array_equal(np.concatenate([b["inputs"] for b in shards[1]])[:150], rows[1:300:2])
    assert Tokenizer.EOS_ID in rows[0]
