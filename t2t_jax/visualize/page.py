"""One self-contained HTML page to explore attention: pick the kind, layer and head; see lines between tokens
and a heatmap; hover a token to see where it looks. Style, script and data are inline: it opens offline."""

from __future__ import annotations

import html
import json

import numpy as np

from t2t_jax.visualize.maps import KIND_TITLES, KINDS, AttentionMaps
from t2t_jax.visualize.page_assets import SCRIPT, STYLE
from t2t_jax.visualize.words import WORD_START, is_special

EXPLANATIONS = {
    "encoder": "Each source token (left) attends to every source token (right); padding is never attended.",
    "decoder": "Each target position (left) attends to itself and earlier positions only (causal mask). A position "
               "is labelled by the token it predicts; its input was the token before (the start symbol first).",
    "cross": "Each target position (left, labelled by the token it predicts) attends to the source tokens (right).",
}
DECIMALS = 4  # weights are rounded in the page: enough to draw, a quarter of the size


def page_data(maps: AttentionMaps, kind: str = "cross", layer: int = 0, head: int | str = 0) -> dict:
    """The JSON-ready data the page script reads (see page_assets.py for its layout)."""
    kinds = {
        name: {
            "title": KIND_TITLES[name],
            "explanation": EXPLANATIONS[name],
            "query_tokens": maps.query_tokens(name),
            "key_tokens": maps.key_tokens(name),
            "weights": np.round(maps.weights(name).astype(np.float64), DECIMALS).tolist(),
        }
        for name in KINDS
    }
    return {
        "source_tokens": maps.source_tokens,
        "target_tokens": maps.target_tokens,
        "kinds": kinds,
        "initial": {"kind": kind, "layer": layer, "head": head},
    }


def render_html(maps: AttentionMaps, kind: str = "cross", layer: int = 0, head: int | str = 0) -> str:
    """The page as a string; `kind`, `layer`, `head` (an index or "mean") are what it shows first."""
    data = json.dumps(page_data(maps, kind, layer, head), ensure_ascii=True, separators=(",", ":"))
    # no '<', '>' or '&' may end the <script> block early, whatever the tokens are
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    source, target = (html.escape(_text(tokens)) for tokens in (maps.source_tokens, maps.target_tokens))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Attention: {source}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Where the Transformer looks</h1>
<p class="pair">source <b>{source}</b> &rarr; target <b>{target}</b></p>
<div id="controls">
  <label>Attention <select id="kind"></select></label>
  <label>Layer <select id="layer"></select></label>
  <label>Head <select id="head"></select></label>
  <label>Show <select id="view">
    <option value="both">lines and heatmap</option>
    <option value="lines">lines</option>
    <option value="heatmap">heatmap</option>
  </select></label>
</div>
<p id="explain"></p>
<div id="views">
  <figure id="lines-view"><figcaption>line opacity = attention weight</figcaption></figure>
  <figure id="heatmap-view"><figcaption>rows attend to columns; darker = more weight</figcaption></figure>
</div>
<p id="readout"></p>
<script type="application/json" id="attention-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write_html(maps: AttentionMaps, path: str, kind: str = "cross", layer: int = 0, head: int | str = 0) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(maps, kind, layer, head))


def _text(tokens: list[str]) -> str:
    """Readable text of pieces ('▁' marks become spaces) or of merged words (joined by spaces); no specials."""
    kept = [token for token in tokens if not is_special(token)]
    if any(token.startswith(WORD_START) for token in kept):
        return "".join(kept).replace(WORD_START, " ").strip()
    return " ".join(kept)
