"""When a run stops early: SIGTERM (preemption) or the time budget, agreed by every process.

On many hosts one process's decision is not enough: a host that stops alone leaves the others waiting in the
next step's collective (or they mismatch collectives and abort). So every process votes after each step: its own
flags and its training time go into a tiny all-reduce over all devices (a [devices, reasons + 1] float32 array,
one row per device, max over the rows), and everyone reads the result of the vote of the step before, once the
current step is dispatched:
the loop never waits on the vote, and all processes see the same result after the same step, so they stop,
checkpoint and exit together. The agreed training time (the slowest process's) drives a time-budgeted schedule:
every process scales its updates, and saves, by the same number. One process needs no collective: its flags and
clock are the decision.

A second SIGTERM does not wait for the checkpoint: the default action ends the process at once.
"""

from __future__ import annotations

import signal
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SIGTERM, TIME_BUDGET = "SIGTERM", "the time budget"
REASONS = (SIGTERM, TIME_BUDGET)


class SigtermFlag:
    """Set by the first SIGTERM; the second one takes the default action (exit now)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


class StopVote:
    """The agreed stop decision, one step behind on many processes, immediate on one."""

    def __init__(self) -> None:
        self._pending: jax.Array | None = None
        if jax.process_count() > 1:
            mesh = Mesh(np.asarray(jax.devices()), ("devices",))
            self._rows = NamedSharding(mesh, PartitionSpec("devices"))
            self._any = jax.jit(lambda votes: votes.max(0), out_shardings=NamedSharding(mesh, PartitionSpec()))

    def decide(self, flags: tuple[bool, ...], seconds: float = 0.0) -> tuple[tuple[str, ...], float | None]:
        """Casts this step's flags (one per REASONS) and training time; returns why to stop after this step (empty:
        go on) and the agreed training time (None until the first vote is counted)."""
        if jax.process_count() == 1:
            return _reason(flags), seconds
        local = np.tile(np.asarray([*flags, seconds], np.float32), (jax.local_device_count(), 1))
        votes = jax.make_array_from_process_local_data(self._rows, local)  # [devices, reasons + 1]
        previous, self._pending = self._pending, self._any(votes)
        return ((), None) if previous is None else _result(np.asarray(previous))

    def settle(self) -> tuple[str, ...]:
        """The last cast vote's reasons (at the end of the run, so that no vote is left unread)."""
        pending, self._pending = self._pending, None
        return () if pending is None else _result(np.asarray(pending))[0]


def _reason(flags: Any) -> tuple[str, ...]:
    return tuple(reason for reason, flag in zip(REASONS, flags) if flag)


def _result(votes: np.ndarray) -> tuple[tuple[str, ...], float]:
    return _reason(votes[: len(REASONS)] > 0), float(votes[len(REASONS)])
