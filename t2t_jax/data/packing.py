"""Example packing: several examples per fixed-length row, told apart by segment ids.

A row holds whole examples only. Segment ids number the examples of a row 1, 2, 3, ... in both inputs and
targets (0 = padding); positions restart at 0 for each example. Packing is best fit over a few open rows: an
example goes to the open row it fills most without overflowing either side; when it fits none, the fullest row
is emitted and the example starts a new row in its place.

The open rows are the state of a `Dataset.scan` over groups of examples, so they are part of the iterator's
checkpoint and a resumed run packs exactly as before. Each scan step packs a whole group in numpy
(`pack_group`, a pure function), because per-example tf.data functions cost far more than the packing itself.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

OPEN_ROWS = 8
ROW_FEATURES = ("inputs", "inputs_segmentation", "inputs_position",
                "targets", "targets_segmentation", "targets_position")  # the planes of a packed row


def pack_examples(groups: tf.data.Dataset, pack_length: int, open_rows: int = OPEN_ROWS) -> tf.data.Dataset:
    """Groups of examples {'inputs': [n, a], 'inputs_length': [n], 'targets': [n, b], 'targets_length': [n]}
    (0-padded, lengths at most pack_length) -> packed rows, each ROW_FEATURES int32 [pack_length]. Rows still
    open when the input ends are not emitted (training data never ends)."""
    initial = (np.zeros([open_rows, len(ROW_FEATURES), pack_length], np.int32),  # open rows
               np.zeros([open_rows, 2], np.int32),  # filled positions: [open_rows, (inputs, targets)]
               np.zeros([open_rows], np.int32))  # examples in each open row
    pack = functools.partial(pack_group, pack_length=pack_length)

    def step(state: tuple[tf.Tensor, ...], group: dict[str, tf.Tensor]) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        inputs = (*state, group["inputs"], group["inputs_length"], group["targets"], group["targets_length"])
        *new_state, emitted = tf.numpy_function(pack, inputs, [tf.int32] * 4, stateful=False)
        for tensor, old in zip(new_state, state, strict=True):
            tensor.set_shape(old.shape)
        emitted.set_shape([None, len(ROW_FEATURES), pack_length])  # [rows emitted, 6, pack_length]
        return tuple(new_state), emitted

    def as_features(emitted: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(ROW_FEATURES, tf.unstack(emitted, axis=1), strict=True))  # each [rows emitted, L]

    return groups.scan(initial, step).map(as_features).unbatch()


def pack_group(
    rows: np.ndarray, used: np.ndarray, counts: np.ndarray, inputs: np.ndarray, inputs_length: np.ndarray,
    targets: np.ndarray, targets_length: np.ndarray, *, pack_length: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Packs a group of examples into the open rows (state: rows [k, 6, L], used [k, 2], counts [k]); returns
    the new state and the rows emitted [m, 6, L]. Pure: the inputs are not modified."""
    rows, used, counts = rows.copy(), used.copy(), counts.copy()
    emitted = []
    for example in range(len(inputs_length)):
        lengths = np.array([inputs_length[example], targets_length[example]], np.int32)
        row, emit = _choose_row(used, lengths, pack_length)
        if emit:
            emitted.append(rows[row].copy())
            rows[row], used[row], counts[row] = 0, 0, 0
        counts[row] += 1
        _write(rows[row], 0, used[row, 0], inputs[example, : lengths[0]], counts[row])
        _write(rows[row], 3, used[row, 1], targets[example, : lengths[1]], counts[row])
        used[row] += lengths
    emitted_rows = np.stack(emitted) if emitted else np.zeros([0, *rows.shape[1:]], np.int32)
    return rows, used, counts, emitted_rows


def _choose_row(used: np.ndarray, lengths: np.ndarray, pack_length: int) -> tuple[int, bool]:
    """(row, whether that row must be emitted first): the best fit, else the fullest row."""
    used_after = used + lengths  # [k, 2]
    fits = np.all(used_after <= pack_length, axis=1)  # [k]
    if fits.any():
        return int(np.argmax(np.where(fits, used_after.max(axis=1), -1))), False
    return int(np.argmax(used.max(axis=1))), True


def _write(row: np.ndarray, first_plane: int, start: int, ids: np.ndarray, segment: int) -> None:
    """Writes one side of an example into a row [6, L]: ids, segment id and positions from column `start`."""
    columns = slice(start, start + len(ids))
    row[first_plane, columns] = ids
    row[first_plane + 1, columns] = segment
    row[first_plane + 2, columns] = np.arange(len(ids))
