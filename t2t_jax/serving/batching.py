"""Dynamic batching: the sentences of concurrent requests are decoded together.

Requests wait in a queue. The worker takes everything already waiting, then waits up to `max_wait_ms` for more
while the batch holds fewer than `batch_tokens` source tokens (times the beam); requests that ask for the same
search (beam size, alpha) are decoded in one call, which sorts their sentences by length into the backend's
length-bucketed shapes. Decoding runs in one worker thread, so the event loop keeps accepting requests.
Every sentence is decoded independently of its batch neighbours (see t2t_jax.decoding.beam_search), so a
request's output does not depend on which batch it landed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
Hypotheses = list[list[tuple[str, float]]]
Decode = Callable[[list[str], int, int, float], Hypotheses]  # (texts, nbest, beam_size, alpha) -> hypotheses


class QueueFull(Exception):
    """More sentences are waiting than the server accepts; the client should retry later."""


@dataclass
class Job:
    texts: list[str]
    tokens: int  # source tokens, for the batch budget
    beam_size: int
    alpha: float
    nbest: int
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """submit() from request handlers; run() is the worker (one task for the server's lifetime)."""

    def __init__(
        self, decode: Decode, executor: ThreadPoolExecutor, batch_tokens: int, max_wait_ms: float, max_queue: int,
        on_batch: Callable[[int], None] = lambda sentences: None,
    ) -> None:
        self.decode, self.executor = decode, executor
        self.batch_tokens, self.max_wait, self.max_queue = batch_tokens, max_wait_ms / 1000, max_queue
        self.on_batch = on_batch
        self.waiting = 0  # sentences queued, not yet being decoded
        self._queue: asyncio.Queue[Job] = asyncio.Queue()

    async def submit(self, texts: list[str], tokens: int, beam_size: int, alpha: float, nbest: int) -> Hypotheses:
        """The n best hypotheses of each text, once decoded; QueueFull if the queue cannot take them."""
        if self.waiting + len(texts) > self.max_queue:
            raise QueueFull(f"{self.waiting} sentences are waiting (at most {self.max_queue})")
        job = Job(texts, tokens, beam_size, alpha, nbest, asyncio.get_running_loop().create_future())
        self.waiting += len(texts)
        self._queue.put_nowait(job)
        return await job.future

    async def run(self) -> None:
        while True:
            jobs = await self._collect()
            self.waiting -= sum(len(job.texts) for job in jobs)
            for group in _by_search(jobs):
                await self._decode(group)

    async def _collect(self) -> list[Job]:
        """The next batch: at least one job, then whatever arrives within max_wait while under the budget."""
        jobs = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while sum(job.tokens * job.beam_size for job in jobs) < self.batch_tokens:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return jobs

    async def _decode(self, jobs: list[Job]) -> None:
        """One backend call for jobs of the same search; each job gets its own slice of the results."""
        live = [job for job in jobs if not job.future.done()]  # a client that went away is not decoded
        if not live:
            return
        texts = [text for job in live for text in job.texts]
        nbest = max(job.nbest for job in live)
        self.on_batch(len(texts))
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.decode, texts, nbest, live[0].beam_size, live[0].alpha)
        except Exception as error:  # noqa: BLE001 (every waiting client gets the error, the worker goes on)
            log.exception("decoding a batch of %d sentences failed", len(texts))
            for job in live:
                _resolve(job.future, error=error)
            return
        start = 0
        for job in live:
            _resolve(job.future, [hypotheses[: job.nbest] for hypotheses in results[start:start + len(job.texts)]])
            start += len(job.texts)


def _by_search(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped by (beam size, alpha), in order of their first arrival."""
    groups: dict[tuple[int, float], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.beam_size, job.alpha), []).append(job)
    return list(groups.values())


def _resolve(future: asyncio.Future, result: Any = None, error: Exception | None = None) -> None:
    if future.done():  # cancelled: the client disconnected
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
