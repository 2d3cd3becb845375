"""Checkpoints with orbax: the train state, the data iterator position and run metadata, saved together.

workdir/checkpoints/STEP   the last `keep` saves (async), each: state/ (step, params, optimizer), data/
                           (tf.data iterator, one per process), meta/ (JSON: best score, elapsed time, ...)
workdir/best/STEP          the best by eval score so far
workdir/averaged/STEP      parameters averaged over the last N checkpoints (the paper: 5 for base, 20 for big)
workdir/corrupt/STEP[.N]   checkpoints whose files could not be read, moved out of the way (never deleted)
Restoring takes an abstract (sharded) state as target, so a checkpoint restores onto any mesh. A latest
checkpoint that cannot be read falls back to the one before it, with a warning; one that does not fit the run's
settings is an error that moves nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from t2t_jax import storage
from t2t_jax.errors import UserError

log = logging.getLogger(__name__)
KINDS = ("checkpoints", "best", "averaged")


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves each process's data iterator (anything with save(dir) / restore(dir) of a local folder) in its own
    folder, through a local scratch copy: TensorFlow writes only to its own file systems."""

    def save(self, directory: epath.Path, args: DataIteratorSave) -> None:
        with tempfile.TemporaryDirectory(prefix="t2t_jax-data-") as local:
            args.iterator.save(local)
            storage.upload_folder(local, directory / f"process_{jax.process_index()}")

    def restore(self, directory: epath.Path, args: DataIteratorRestore) -> Any:
        folder = directory / f"process_{jax.process_index()}"
        if not folder.exists():
            raise FileNotFoundError(f"no data iterator state for process {jax.process_index()} in {directory}")
        with tempfile.TemporaryDirectory(prefix="t2t_jax-data-") as local:
            storage.download_folder(folder, local)
            args.iterator.restore(local)
        return args.iterator


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


def _manager(directory: epath.Path, keep: int, async_save: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(directory, options=options)


class Checkpoints:
    """The checkpoint folders of one workdir."""

    def __init__(self, workdir: str, keep: int = 5, async_save: bool = True) -> None:
        self.root = storage.path(workdir)
        self.latest = _manager(self.root / "checkpoints", keep, async_save)
        self.best = _manager(self.root / "best", 1)

    def save(self, step: int, state: Any, iterator: Any, meta: dict[str, Any]) -> None:
        """Saves state, iterator position and metadata; asynchronous for the arrays."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=DataIteratorSave(iterator), meta=ocp.args.JsonSave(meta)
        )
        self.latest.save(step, args=args, force=True)

    def save_best(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self.latest.wait_until_finished()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.best.save(step, args=args, force=True)
        self.best.wait_until_finished()

    def restore_latest(self, target: Any, iterator: Any) -> Restored | None:
        """The newest readable checkpoint, with `iterator` moved to its data position when the checkpoint was
        written by as many processes as this run has (on another topology the caller starts the data anew).

        Only a checkpoint whose files cannot be read is set aside (to corrupt/, never deleted), and only when
        every process agrees; a settings mismatch is a UserError that moves nothing."""
        for step in sorted(self.latest.all_steps(), reverse=True):
            same_topology = self.data_writers(step) == jax.process_count()
            items = {"state": ocp.args.StandardRestore(target), "meta": ocp.args.JsonRestore()}
            if same_topology:
                items["data"] = DataIteratorRestore(iterator)
            failure = None
            try:
                restored = self.latest.restore(step, args=ocp.args.Composite(**items))
            except UserError as error:  # ours: the data pipeline does not fit the saved position
                raise UserError(f"checkpoint {step} of {self.root}: {error} (nothing was moved)") from None
            except Exception as error:  # unreadable files, or arrays that do not fit the model's
                _raise_if_mismatch(error, step, self.root)
                failure = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
            if not _any_process(failure is not None):
                return Restored(restored.state, dict(restored.meta), same_topology)
            aside = self._move_aside(step)
            log.warning("checkpoint %s in %s cannot be restored (%s); moved to %s, trying the one before",
                        step, self.latest.directory, failure or "unreadable on another process", aside)
        return None

    def data_writers(self, step: int) -> int:
        """How many processes saved their data position in checkpoint `step`."""
        data = self.latest.directory / str(step) / "data"
        return sum(1 for p in data.iterdir() if p.name.startswith("process_")) if data.exists() else 0

    def _move_aside(self, step: int) -> epath.Path:
        """Moves checkpoint `step` to corrupt/STEP (corrupt/STEP.1, ... when that exists: nothing is deleted)."""
        aside = self.root / "corrupt" / str(step)
        suffix = 0
        while aside.exists():
            suffix += 1
            aside = self.root / "corrupt" / f"{step}.{suffix}"
        if jax.process_index() == 0:
            storage.move_folder(self.latest.directory / str(step), aside)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"t2t_jax checkpoint {step} moved aside")
        self.latest.reload()
        return aside

    def wait(self) -> None:
        self.latest.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


class Restored(NamedTuple):
    state: Any
    meta: dict[str, Any]
    data_restored: bool  # False: saved by another number of processes, the data position did not carry over


# What orbax says when the arrays on disk do not fit the target (a settings change), not when files are bad.
_MISMATCH_MARKERS = ("tree structure", "do not match", "mismatch", "missing keys", "unexpected keys")


def _raise_if_mismatch(error: Exception, step: int, root: epath.Path) -> None:
    text = str(error)
    if any(marker in text.lower() for marker in _MISMATCH_MARKERS):
        first_line = text.splitlines()[0][:160].rstrip(": ")
        raise UserError(
            f"checkpoint {step} of {root} does not fit this run's settings ({first_line}): "
            "use the settings it was trained with or a new workdir (nothing was moved)"
        ) from None


def _any_process(flag: bool) -> bool:
    """True when `flag` holds on any process (all processes must call this together)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.process_allgather(np.asarray([int(flag)], np.int32)).max())


def restore_state(workdir: str, which: str, target: Any) -> tuple[Any, int]:
    """The state saved under `which` = latest | best | averaged | a step number, onto `target`."""
    kind, step = _resolve(workdir, which)
    manager = _manager(storage.path(workdir) / kind, keep=1_000_000)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    manager.close()
    return restored.state, step


def _resolve(workdir: str, which: str) -> tuple[str, int]:
    root = storage.path(workdir)
    if not root.exists():
        raise UserError(f"workdir {workdir} does not exist")
    kind = {"latest": "checkpoints", "best": "best", "averaged": "averaged"}.get(which, "checkpoints")
    steps = _steps(root / kind)
    if not steps:
        hint = {"best": " (no evaluation has run yet)", "averaged": " (run `t2t-jax average` first)"}.get(which, "")
        raise UserError(f"no {which} checkpoint in {root / kind}{hint}")
    if which in ("latest", "best", "averaged"):
        return kind, steps[-1]
    if not which.isdigit() or int(which) not in steps:
        raise UserError(f"checkpoint {which!r} not found: use latest, best, averaged or one of {steps}")
    return kind, int(which)


def _steps(directory: epath.Path) -> list[int]:
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def average_checkpoints(workdir: str, last: int, target: Any) -> tuple[int, list[int]]:
    """Averages the parameters of the last `last` checkpoints (the paper's checkpoint averaging) and saves
    the result, with the newest one's optimizer state, as workdir/averaged/STEP. Returns (step, averaged)."""
    steps = _steps(storage.path(workdir) / "checkpoints")
    if not steps:
        raise UserError(f"no checkpoints to average in {workdir}/checkpoints")
    chosen = steps[-last:]
    if len(chosen) < last:
        log.warning("only %d checkpoints in %s/checkpoints; averaging those", len(chosen), workdir)
    total, newest = None, None
    for step in chosen:
        state, _ = restore_state(workdir, str(step), target)
        total = state.params if total is None else jax.tree_util.tree_map(jnp.add, total, state.params)
        newest = state
    params = jax.tree_util.tree_map(lambda x: x / len(chosen), total)
    manager = _manager(storage.path(workdir) / "averaged", keep=1)
    if chosen[-1] in manager.all_steps():  # averaged again (e.g. over another N): the new average replaces it
        manager.delete(chosen[-1])
    manager.save(chosen[-1], args=ocp.args.Composite(
        state=ocp.args.StandardSave(newest.replace(params=params)),
        meta=ocp.args.JsonSave({"averaged_steps": chosen}),
    ), force=True)
    manager.wait_until_finished()
    manager.close()
    return chosen[-1], chosen
