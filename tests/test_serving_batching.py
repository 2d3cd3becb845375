"""The server's dynamic batcher, with a stand-in decoder that records its calls: concurrent requests are merged
into one call within the token budget, each gets its own results back, a full queue refuses, a failing batch
fails only its own requests, and a client that went away is not decoded."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from t2t_jax.serving.batching import DynamicBatcher, QueueFull


class Recorder:
    """decode(texts, nbest, beam, alpha): the reversed text, n times; records every call."""

    def __init__(self, seconds=0.0, fail_on=None):
        self.calls, self.seconds, self.fail_on = [], seconds, fail_on
        self.started = threading.Event()

    def __call__(self, texts, nbest, beam_size, alpha):
        self.started.set()
        self.calls.append((list(texts), nbest, beam_size, alpha))
        time.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("the model failed")
        return [[(text[::-1] + "!" * k, -float(k)) for k in range(nbest)] for text in texts]


def run(coroutine_fn, decoder, **settings):
    async def main():
        executor = ThreadPoolExecutor(max_workers=1)
        options = dict(batch_tokens=1000, max_wait_ms=50, max_queue=100) | settings
        batcher = DynamicBatcher(decoder, executor, **options)
        worker = asyncio.create_task(batcher.run())
        try:
            return await coroutine_fn(batcher)
        finally:
            worker.cancel()
            executor.shutdown()

    return asyncio.run(main())


def test_concurrent_requests_share_one_call_and_each_gets_its_own_results():
    decoder = Recorder()

    async def clients(batcher):
        requests = [["ab", "cd"], ["ef"], ["gh", "ij", "kl"]]
        return await asyncio.gather(*(batcher.submit(texts, 3 * len(texts), 4, 0.6, 1) for texts in requests))

    results = run(clients, decoder)
    assert [[best[0][0] for best in result] for result in results] == [["ba", "dc"], ["fe"], ["hg", "ji", "lk"]]
    assert len(decoder.calls) == 1 and decoder.calls[0][0] == ["ab", "cd", "ef", "gh", "ij", "kl"]


def test_the_token_budget_splits_batches_and_searches_are_not_mixed():
    decoder = Recorder()

    async def clients(batcher):
        return await asyncio.gather(
            batcher.submit(["a"], 5, 4, 0.6, 1), batcher.submit(["b"], 5, 4, 0.6, 1),  # 2 x 5 x beam 4 = the budget
            batcher.submit(["c"], 5, 4, 0.6, 1),
            batcher.submit(["d"], 1, 2, 0.6, 2),  # another beam size: its own call, its n-best
        )

    results = run(clients, decoder, batch_tokens=40)
    assert [call[0] for call in decoder.calls] == [["a", "b"], ["c"], ["d"]]
    assert decoder.calls[2][1:] == (2, 2, 0.6)
    assert results[3] == [[("d", -0.0), ("d!", -1.0)]]
    assert all(len(result[0]) == 1 for result in results[:3])  # n_best 1: one hypothesis each


def test_a_full_queue_refuses_and_the_queue_drains():
    decoder = Recorder(seconds=0.3)

    async def clients(batcher):
        first = asyncio.create_task(batcher.submit(["x"] * 3, 3, 1, 0.0, 1))  # being decoded (slow)
        while not decoder.started.is_set():
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(batcher.submit(["y"] * 4, 4, 1, 0.0, 1))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await batcher.submit(["z"] * 2, 2, 1, 0.0, 1)  # 4 waiting + 2 > 5
        await asyncio.gather(first, waiting)
        assert batcher.waiting == 0
        return await batcher.submit(["z"] * 2, 2, 1, 0.0, 1)

    assert len(run(clients, decoder, max_queue=5, max_wait_ms=0)) == 2


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    decoder = Recorder(fail_on="bad")

    async def clients(batcher):
        with pytest.raises(RuntimeError, match="the model failed"):
            await batcher.submit(["bad"], 1, 4, 0.6, 1)
        return await batcher.submit(["good"], 1, 4, 0.6, 1)

    assert run(clients, decoder) == [[("doog", -0.0)]]


def test_a_client_that_went_away_is_not_decoded():
    decoder = Recorder(seconds=0.2)

    async def clients(batcher):
        busy = asyncio.create_task(batcher.submit(["busy"], 1, 1, 0.0, 1))
        while not decoder.started.is_set():
            await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.submit(["gone"], 1, 1, 0.0, 1))
        await asyncio.sleep(0.01)
        gone.cancel()
        await busy
        return await batcher.submit(["next"], 1, 1, 0.0, 1)

    run(clients, decoder, max_wait_ms=0)
    assert [call[0] for call in decoder.calls] == [["busy"], ["next"]]
