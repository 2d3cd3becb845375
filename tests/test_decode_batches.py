"""How lines become decoding batches: every batch shape is one that shapes() lists (what a server compiles),
within the token budget, every non-empty line in exactly one batch, padded to its bucket."""

import random

import numpy as np
import pytest

from t2t_jax.data.decode_batches import BatchPlan, length_buckets


@pytest.mark.parametrize("budget, beam, max_batch, multiple", [(4096, 4, None, 1), (512, 1, 4, 1), (2048, 4, 8, 2)])
def test_batches_use_listed_shapes_within_the_budget(budget, beam, max_batch, multiple):
    plan = BatchPlan(length_buckets(60), budget, beam, max_batch, multiple)
    shapes = set(plan.shapes())
    rng = random.Random(0)
    for _ in range(30):
        ids = [[rng.randrange(2, 50) for _ in range(rng.randrange(0, 61))] for _ in range(rng.randrange(1, 200))]
        seen = []
        for rows, batch in plan.batches(ids):
            assert batch.shape in shapes
            size, length = batch.shape
            assert size & (size - 1) == 0 or size % multiple == 0
            assert size * length * beam <= max(budget, length * beam * multiple) and len(rows) <= size
            for row, index in enumerate(rows):
                assert batch[row, : len(ids[index])].tolist() == ids[index] and not batch[row, len(ids[index]):].any()
            assert not batch[len(rows):].any()
            seen += rows
        assert sorted(seen) == [i for i, line in enumerate(ids) if line]


def test_a_lone_short_line_gets_a_batch_of_one():
    plan = BatchPlan(length_buckets(64), 4096, 4)
    [(rows, batch)] = plan.batches([[5, 6, 1]])
    assert rows == [0] and batch.shape == (1, 8) and batch.dtype == np.int32
    assert (1, 8) in plan.shapes() and (128, 8) in plan.shapes() and max(plan.shapes())[0] == 128
