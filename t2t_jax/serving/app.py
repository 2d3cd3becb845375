"""The translation server: a Starlette (ASGI) app, run by uvicorn (`t2t-jax serve`).

    POST /v1/translate  {"text": ["...", ...], "beam_size": 4, "alpha": 0.6, "n_best": 1}
                        -> {"translations": ["...", ...]}   (n_best > 1: [[{"text", "score"}, ...], ...])
    GET  /v1/model      checkpoint step, model and decoding settings, vocabulary, limits
    GET  /v1/attention?text=...   the attention page (t2t_jax.visualize) of one sentence and its translation
    GET  /healthz, GET /metrics (Prometheus text format), GET / (a page to translate and look at attention)

A client's mistake is a 4xx with {"error": "..."}: 400 for bad JSON, bad UTF-8 or wrong types, 413 for too
many sentences or characters, 503 with Retry-After when the queue is full. Nothing a client sends stops the
server or another client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from t2t_jax.errors import UserError
from t2t_jax.serving.backends import Backend, check_search
from t2t_jax.serving.batching import DynamicBatcher, QueueFull
from t2t_jax.serving.page import PAGE

log = logging.getLogger(__name__)
FIELDS = {"text", "beam_size", "alpha", "n_best"}


@dataclass(frozen=True)
class Limits:
    max_sentences: int = 256  # per request
    max_chars: int = 100_000  # per request, all sentences together
    max_body_bytes: int = 1 << 20
    max_queue: int = 4096  # sentences waiting
    batch_tokens: int = 4096  # source tokens x beam per decoding call
    max_wait_ms: float = 10.0


class ClientError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("t2t_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.sentences = Counter("t2t_sentences", "sentences translated", registry=self.registry)
        self.latency = Histogram("t2t_translate_latency_seconds", "POST /v1/translate latency",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.batch = Histogram("t2t_batch_sentences", "sentences per decoding call",
                               buckets=tuple(2.0 ** k for k in range(11)), registry=self.registry)
        self.queue = Gauge("t2t_queue_sentences", "sentences waiting to be decoded", registry=self.registry)


def create_app(backend: Backend, limits: Limits = Limits()) -> Starlette:
    """The ASGI app for a warmed-up backend."""
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")  # one model call at a time
    batcher = DynamicBatcher(backend.translate, executor, limits.batch_tokens, limits.max_wait_ms, limits.max_queue,
                             on_batch=metrics.batch.observe)
    metrics.queue.set_function(lambda: batcher.waiting)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        executor.shutdown(wait=False, cancel_futures=True)

    async def translate(request: Request) -> Response:
        started = time.perf_counter()
        texts, beam_size, alpha, nbest = _parse(await _json_body(request, limits), backend, limits)
        tokens = [backend.count_tokens(text) for text in texts]
        try:
            results = await batcher.submit(texts, sum(tokens), beam_size, alpha, nbest)
        except QueueFull as full:
            raise ClientError(503, f"the server is busy: {full}; retry later", {"Retry-After": "1"}) from None
        except UserError as error:
            raise ClientError(400, str(error)) from None
        metrics.sentences.inc(len(texts))
        metrics.latency.observe(time.perf_counter() - started)
        if nbest == 1:
            translations: list[Any] = [hypotheses[0][0] for hypotheses in results]
        else:
            translations = [[{"text": text, "score": round(score, 6)} for text, score in hypotheses]
                            for hypotheses in results]
        body: dict[str, Any] = {"translations": translations}
        limit = backend.describe()["decode"]["max_source_length"]
        overlong = [index for index, count in enumerate(tokens) if count > limit]
        if overlong:
            body["warnings"] = [f"sentence {index} is longer than {limit} tokens and was truncated"
                                for index in overlong]
        return JSONResponse(body)

    async def attention(request: Request) -> Response:
        text = request.query_params.get("text", "")
        if not hasattr(backend, "attention"):
            raise ClientError(404, f"attention maps need the jax backend (this server runs {backend.name})")
        if not text.strip():
            raise ClientError(400, "give one sentence: /v1/attention?text=...")
        if len(text) > limits.max_chars:
            raise ClientError(413, f"the sentence has {len(text)} characters (at most {limits.max_chars})")
        from t2t_jax.visualize.page import render_html

        maps = await asyncio.get_running_loop().run_in_executor(executor, backend.attention, text)
        return HTMLResponse(render_html(maps, kind="cross", layer=0, head="mean"))

    async def model(request: Request) -> Response:
        return JSONResponse({**backend.describe(), "attention": hasattr(backend, "attention"),
                             "limits": asdict(limits)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        return HTMLResponse(PAGE)

    routes = [Route("/", index), Route("/healthz", healthz), Route("/metrics", prometheus),
              Route("/v1/model", model), Route("/v1/translate", translate, methods=["POST"]),
              Route("/v1/attention", attention)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ClientError: _client_error, Exception: _server_error, 404: _not_found, 405: _not_allowed})
    app.add_middleware(_CountRequests, metrics=metrics)
    return app


async def _json_body(request: Request, limits: Limits) -> Any:
    """The request's JSON, read up to max_body_bytes: 413 beyond that, 400 if it is not UTF-8 JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ClientError(413, f"the body has {declared} bytes (at most {limits.max_body_bytes})")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise ClientError(413, f"the body is over {limits.max_body_bytes} bytes")
    except ClientDisconnect:
        raise ClientError(400, "the client disconnected") from None
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ClientError(400, f"the body is not valid UTF-8 (byte {error.start})") from None
    except ValueError as error:
        raise ClientError(400, f"the body is not valid JSON: {error}") from None


def _parse(body: Any, backend: Backend, limits: Limits) -> tuple[list[str], int, float, int]:
    """(texts, beam_size, alpha, n_best) of a translate request, or a ClientError saying what is wrong."""
    if not isinstance(body, dict):
        raise ClientError(400, 'the body must be a JSON object: {"text": ["...", ...]}')
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ClientError(400, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(FIELDS))}")
    texts = body.get("text")
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise ClientError(400, '"text" must be a list of strings')
    if len(texts) > limits.max_sentences:
        raise ClientError(413, f"{len(texts)} sentences in one request (at most {limits.max_sentences})")
    chars = sum(len(text) for text in texts)
    if chars > limits.max_chars:
        raise ClientError(413, f"{chars} characters in one request (at most {limits.max_chars})")
    beam_size = _number(body, "beam_size", int, backend.beam_size)
    alpha = float(_number(body, "alpha", (int, float), backend.alpha))
    nbest = _number(body, "n_best", int, 1)
    try:
        check_search(beam_size, alpha, nbest)
    except UserError as error:
        raise ClientError(400, str(error)) from None
    return texts, beam_size, alpha, nbest


def _number(body: dict, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ClientError(400, f'"{key}" must be a {"whole " if kind is int else ""}number, got {value!r}')
    return value


async def _client_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ClientError)
    return JSONResponse({"error": error.reason}, status_code=error.status, headers=error.headers)


async def _server_error(request: Request, error: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)


async def _not_found(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": f"no such path: {request.url.path}"}, status_code=404)


async def _not_allowed(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": f"{request.method} is not allowed on {request.url.path}"}, status_code=405)


class _CountRequests:
    """ASGI middleware: counts every HTTP response by path and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
                self.metrics.requests.labels(path, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


KNOWN_PATHS = {"/", "/healthz", "/metrics", "/v1/model", "/v1/translate", "/v1/attention"}
