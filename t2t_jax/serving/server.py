"""`t2t-jax serve`: load a workdir's model, compile every batch shape, then open the port (uvicorn)."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Sequence

from t2t_jax.errors import UserError
from t2t_jax.serving.app import Limits, create_app
from t2t_jax.serving.backends import Backend, JaxBackend

log = logging.getLogger(__name__)
BACKENDS = ("jax", "ctranslate2")


def check_port(host: str, port: int) -> None:
    """UserError now (not after minutes of compiling) if host:port cannot be listened on."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"--host {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
            raise UserError(f"{host}:{port} {reason}: choose another --port or --host") from None


def load_backend(
    workdir: str, backend: str = "jax", checkpoint: str = "latest", max_batch: int | None = None,
    quantize: str | None = None, overrides: Sequence[tuple[str, str]] = (),
) -> Backend:
    """The model of `workdir` behind `backend` (jax | ctranslate2, converted on the fly, int8 with quantize);
    overrides: ("decode.KEY", "VALUE") changes of the decode settings."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "jax":
        if quantize:
            raise UserError("--quantize needs --backend ctranslate2")
        return JaxBackend.from_workdir(workdir, checkpoint, max_batch, overrides)
    from t2t_jax.serving.backends import CTranslate2Backend

    return CTranslate2Backend.from_workdir(workdir, checkpoint, quantize, overrides)


def serve(backend: Backend, host: str, port: int, limits: Limits) -> None:
    """Compile every shape, then serve until SIGINT/SIGTERM."""
    import uvicorn

    check_port(host, port)
    started = time.perf_counter()
    shapes = backend.warm_up()
    print(f"warmed up {shapes} batch shape(s) in {time.perf_counter() - started:.1f} s", flush=True)
    app = create_app(backend, limits)
    print(f"serving {backend.describe().get('workdir', '')} ({backend.name}) on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
