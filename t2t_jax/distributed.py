"""Multi-host start-up: jax.distributed from the environment, and a preflight check of the topology.

- Cloud TPU pods: jax.distributed.initialize() with no arguments (the TPU runtime knows the topology).
- GPU clusters: T2T_COORDINATOR (host:port), T2T_NUM_PROCESSES and T2T_PROCESS_ID, or SLURM's variables
  (SLURM_NTASKS > 1; the coordinator is the first host of SLURM_JOB_NODELIST, see launch/slurm.sbatch).
- One process: nothing to do.
T2T_EXPECTED_DEVICES (optional) makes the preflight check fail fast, naming the host whose device count is off,
instead of hanging in the first collective.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import jax

from t2t_jax.errors import UserError

log = logging.getLogger(__name__)
DEFAULT_PORT = 12355


def _slurm_coordinator() -> str:
    nodes = os.environ.get("SLURM_JOB_NODELIST", os.environ.get("SLURM_NODELIST", ""))
    first = nodes.split(",")[0]
    if "[" in first:  # host[01-04] -> host01
        prefix, ranges = first.split("[", 1)
        first = prefix + ranges.split("-")[0].split(",")[0].rstrip("]")
    return f"{first}:{os.environ.get('T2T_COORDINATOR_PORT', DEFAULT_PORT)}"


_initialized = False


def _heartbeat_timeout() -> int:
    """Seconds after which the surviving processes of a run whose host died (killed, out of memory, a lost VM)
    are terminated by jax.distributed, instead of waiting in a collective forever: T2T_HEARTBEAT_TIMEOUT_S, 100 by
    default (JAX's). Their last checkpoint is intact; run again to resume."""
    return int(os.environ.get("T2T_HEARTBEAT_TIMEOUT_S", "100"))


def initialize_from_environment() -> None:
    """Calls jax.distributed.initialize (once) when the environment describes more than one process."""
    global _initialized
    env = os.environ
    if _initialized:
        return
    if "T2T_COORDINATOR" in env or int(env.get("SLURM_NTASKS", "1")) > 1 or env.get("T2T_TPU_POD") == "1":
        keep_stdout_for_our_output()
    if "T2T_COORDINATOR" in env or int(env.get("SLURM_NTASKS", "1")) > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only hosts (tests); GPUs use NCCL
    if "T2T_COORDINATOR" in env:
        jax.distributed.initialize(
            coordinator_address=env["T2T_COORDINATOR"], num_processes=int(env["T2T_NUM_PROCESSES"]),
            process_id=int(env["T2T_PROCESS_ID"]), heartbeat_timeout_seconds=_heartbeat_timeout(),
        )
    elif int(env.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize(
            coordinator_address=_slurm_coordinator(), num_processes=int(env["SLURM_NTASKS"]),
            process_id=int(env["SLURM_PROCID"]), heartbeat_timeout_seconds=_heartbeat_timeout(),
        )
    elif env.get("T2T_TPU_POD") == "1":
        jax.distributed.initialize(heartbeat_timeout_seconds=_heartbeat_timeout())
    else:
        return
    _initialized = True
    preflight()


def keep_stdout_for_our_output() -> None:
    """Native libraries print on file descriptor 1 (gloo: "0 is connected to 1 peer ranks..." as a multi-host run
    connects), which would mix into the translations `decode` writes to stdout. From here on descriptor 1 is stderr,
    and Python's sys.stdout writes to a copy of the original stdout, so that stdout carries only our own output."""
    try:
        if sys.stdout.fileno() != 1:
            return
    except (AttributeError, OSError, ValueError):  # replaced by a test harness or an embedding program: leave it
        return
    sys.stdout.flush()
    ours = os.dup(1)
    os.dup2(2, 1)
    old = sys.stdout
    sys.stdout = open(ours, "w", buffering=1 if old.line_buffering else -1,  # noqa: SIM115 - open for life
                      encoding=old.encoding, errors=old.errors)


def preflight() -> None:
    """Every process sees the same number of devices, and as many as expected."""
    from jax.experimental import multihost_utils

    local = jax.local_device_count()
    counts = multihost_utils.process_allgather(jax.numpy.asarray([local])).reshape(-1).tolist()
    expected = int(os.environ.get("T2T_EXPECTED_DEVICES", "0"))
    odd = [index for index, count in enumerate(counts) if count != counts[0]]
    if odd or (expected and sum(counts) != expected):
        raise UserError(
            f"devices per process {counts} (processes {odd or 'all'} differ"
            + (f"; expected {expected} in all" if expected else "") + "): check every host started with its GPUs/TPUs"
        )
    log.info("process %d of %d, %d local of %d devices", jax.process_index(), jax.process_count(), local,
             jax.device_count())


def gather(value: Any) -> list[Any]:
    """Every process's `value` (anything JSON can hold), in process order, on every process. One call per
    process, in the same order on all (it is a collective)."""
    if jax.process_count() == 1:
        return [value]
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([data.size], np.int32)).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    everyone = multihost_utils.process_allgather(padded)  # [processes, longest]
    return [json.loads(bytes(row[:size]).decode()) for row, size in zip(everyone, sizes)]


def agree(error: str | None) -> None:
    """Raises one UserError on every process when any process has an `error` (a missing file on one host, say),
    naming the processes, so that all stop together instead of the others waiting in the next collective."""
    errors = gather(error)
    failed = [f"process {index}: {text}" for index, text in enumerate(errors) if text is not None]
    if failed:
        raise UserError(error if len(errors) == 1 else "; ".join(failed))


def wait_for_all(name: str, timeout_s: float) -> None:
    """A barrier of all processes through jax.distributed's coordination service (no device collective, so it
    can wait for hours: a host preparing a dataset). `name` must be new for each barrier of a run."""
    import orbax.checkpoint as ocp

    ocp.multihost.sync_global_processes(name, timeout=int(timeout_s), processes=set(range(jax.process_count())))
