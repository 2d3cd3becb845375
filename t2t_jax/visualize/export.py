"""Write attention maps to a file chosen by its extension: .png (heatmaps) or .html (interactive page)."""

from __future__ import annotations

import os

from t2t_jax.errors import UserError
from t2t_jax.visualize.maps import AttentionMaps, check_kind

FORMATS = {".png": "png", ".html": "html", ".htm": "html"}


def output_format(path: str) -> str:
    """'png' or 'html' by the extension of `path`; UserError for another extension or a missing directory."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise UserError(f"--output {path}: the file name must end in .png or .html, not {extension or 'nothing'!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"--output {path}: directory {directory} does not exist")
    return FORMATS[extension]


def check_selection(maps: AttentionMaps, kind: str, layer: int | None, head: int | None) -> None:
    """UserError unless kind, layer and head exist in `maps`."""
    check_kind(kind)
    layers = maps.num_layers(kind)
    if layer is not None and not 0 <= layer < layers:
        raise UserError(f"--layer {layer}: {kind} attention has layers 0 to {layers - 1}")
    if head is not None and not 0 <= head < maps.num_heads:
        raise UserError(f"--head {head}: the model has heads 0 to {maps.num_heads - 1}")


def write_attention(
    maps: AttentionMaps, path: str, kind: str = "cross", layer: int | None = None, head: int | None = None
) -> None:
    """PNG: heatmaps of `kind` for every layer and head (or the chosen ones). HTML: the page, showing `kind`,
    `layer` (default 0) and `head` (default: the mean of the heads) first."""
    fmt = output_format(path)
    check_selection(maps, kind, layer, head)
    if fmt == "png":
        from t2t_jax.visualize.heatmap import write_png  # matplotlib only when drawing a picture

        write_png(maps, path, kind, layer, head)
    else:
        from t2t_jax.visualize.page import write_html

        write_html(maps, path, kind, 0 if layer is None else layer, "mean" if head is None else head)
