"""Attention weights of one teacher-forced forward pass, read from the model's 'intermediates' collection.

Every MultiHeadAttention call sows its softmax weights (float32 [batch, heads, q_length, kv_length]); this module
runs the Transformer once with that collection mutable and gathers them per kind, layers stacked first:

    weights = attention_weights(config, params, inputs, targets)
    weights["cross"]    # float32 [layers, batch, heads, T, S]

Works for loop models (`layers_0`, `layers_1`, ...) and `scan_layers=True` models (one `layers` entry whose
weights already carry a leading layer axis). Pure JAX + numpy: no tensorflow, no plotting.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jax
import numpy as np

from t2t_jax.model import Transformer, TransformerConfig
from t2t_jax.visualize.maps import KINDS

# kind -> (module, attention sub-module) in the 'intermediates' tree
_PATHS = {
    "encoder": ("encoder", "self_attention"),
    "decoder": ("decoder", "self_attention"),
    "cross": ("decoder", "cross_attention"),
}
_LAYER = re.compile(r"layers_(\d+)$")


def attention_weights(
    config: TransformerConfig,
    params: Any,
    inputs: np.ndarray,  # [batch, S] int, 0-padded, EOS-terminated
    targets: np.ndarray,  # [batch, T] int, EOS-terminated; the model shifts them right itself
    inputs_segmentation: np.ndarray | None = None,  # [batch, S] packed examples (1, 2, ...; 0 = padding)
    inputs_positions: np.ndarray | None = None,
    targets_segmentation: np.ndarray | None = None,
    targets_positions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """float32 weights per kind: encoder [layers, batch, heads, S, S], decoder [layers, batch, heads, T, T],
    cross [layers, batch, heads, T, S]. Row t of decoder and cross is the query that predicts targets[:, t]."""
    config = config.replace(decode=False, remat="none", attention_chunk=0)  # whole weights, to be sown
    intermediates = _forward(
        config, params, inputs, targets, inputs_segmentation, inputs_positions, targets_segmentation,
        targets_positions,
    )
    return {kind: _stacked(intermediates, *_PATHS[kind]) for kind in KINDS}


@functools.partial(jax.jit, static_argnums=0)
def _forward(config: TransformerConfig, params: Any, *arrays: Any) -> Any:
    _, state = Transformer(config).apply(
        {"params": params}, *arrays, deterministic=True, mutable=["intermediates"]
    )
    return state["intermediates"]


def _stacked(intermediates: Any, module: str, attention: str) -> np.ndarray:
    """[layers, batch, heads, q, k] from `module/layers_i/attention` or the scanned `module/layers/attention`."""
    layers = intermediates[module]
    if "layers" in layers:  # scan_layers=True: already [layers, batch, heads, q, k]
        return np.asarray(layers["layers"][attention]["attention_weights"][0])
    numbered = sorted((int(_LAYER.match(name).group(1)), value) for name, value in layers.items()
                      if _LAYER.match(name))
    return np.stack([np.asarray(value[attention]["attention_weights"][0]) for _, value in numbered])
