"""PNG pictures of attention: a grid of heatmaps (layers x heads of one kind, or a chosen layer and/or head),
drawn with matplotlib's Agg backend (no display needed), axes labelled with the tokens."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
import numpy as np  # noqa: E402

from t2t_jax.visualize.maps import KIND_TITLES, AttentionMaps  # noqa: E402

CELL_INCHES = 0.22  # per token, so that labels stay readable
MIN_PANEL_INCHES = 1.6


def write_png(
    maps: AttentionMaps, path: str, kind: str = "cross", layer: int | None = None, head: int | None = None
) -> None:
    """Heatmaps of `kind`: every layer (rows) and head (columns), or only the given layer and/or head."""
    weights = maps.weights(kind)  # [layers, heads, queries, keys]
    layers = range(weights.shape[0]) if layer is None else [layer]
    heads = range(weights.shape[1]) if head is None else [head]
    query_tokens, key_tokens = maps.query_tokens(kind), maps.key_tokens(kind)
    panel_width = max(MIN_PANEL_INCHES, CELL_INCHES * len(key_tokens) + 0.9)
    panel_height = max(MIN_PANEL_INCHES, CELL_INCHES * len(query_tokens) + 0.9)
    figure, axes = plt.subplots(
        len(layers), len(heads), figsize=(panel_width * len(heads) + 1.2, panel_height * len(layers) + 0.6),
        squeeze=False, constrained_layout=True,
    )
    image = None
    for row, layer_index in enumerate(layers):
        for column, head_index in enumerate(heads):
            image = _panel(
                axes[row, column], weights[layer_index, head_index], query_tokens, key_tokens,
                f"layer {layer_index} head {head_index}", label_rows=column == 0, label_columns=row == len(layers) - 1,
            )
    figure.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    figure.suptitle(_title(kind))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _panel(
    axis: plt.Axes, weights: np.ndarray, query_tokens: list[str], key_tokens: list[str], title: str,
    label_rows: bool, label_columns: bool,
) -> matplotlib.image.AxesImage:
    """One heatmap, weights [queries, keys], on a fixed 0..1 scale so that heads compare honestly."""
    image = axis.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    axis.set_title(title, fontsize=9)
    axis.set_xticks(range(len(key_tokens)), key_tokens if label_columns else [""] * len(key_tokens),
                    rotation=90, fontsize=7)
    axis.set_yticks(range(len(query_tokens)), query_tokens if label_rows else [""] * len(query_tokens), fontsize=7)
    axis.tick_params(length=0)
    return image


def _title(kind: str) -> str:
    rows = "source token" if kind == "encoder" else "target position (labelled by the token it predicts)"
    columns = "target position" if kind == "decoder" else "source token"
    return f"{KIND_TITLES[kind]}: rows = {rows}, columns = {columns}"
