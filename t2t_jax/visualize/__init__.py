"""Attention visualization: capture a model's attention weights and draw them (PNG heatmaps, an HTML page).

    maps = Translator.from_workdir("runs/reverse").attention("3 1 4 1 5")   # an AttentionMaps
    maps.cross                                  # float32 [layers, heads, T, S], rows sum to 1
    write_attention(maps, "attention.html")     # or .png

capture.py  weights of every layer and head from one forward pass ('intermediates' collection)   - JAX only
maps.py     AttentionMaps: weights + token labels                                                  - numpy only
words.py    merge SentencePiece pieces into words
heatmap.py  PNG grid of heatmaps (matplotlib, Agg);  page.py + page_assets.py  the HTML page
export.py   write_attention: by the output file's extension
"""

from t2t_jax.visualize.capture import attention_weights
from t2t_jax.visualize.export import write_attention
from t2t_jax.visualize.maps import KINDS, AttentionMaps
from t2t_jax.visualize.words import merge_words

__all__ = ["KINDS", "AttentionMaps", "attention_weights", "merge_words", "write_attention"]
