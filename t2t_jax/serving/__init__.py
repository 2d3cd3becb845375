"""Deployment: exported models (StableHLO, CTranslate2) and the translation server.

    from t2t_jax import serving
    model = serving.load("exports/multi30k-stablehlo")     # written by `t2t-jax export`
    model.translate(["Ein Hund rennt."])                   # -> ["A dog is running."]
"""

from __future__ import annotations

from typing import Any

from t2t_jax.serving.manifest import read_manifest


def load(path: str) -> Any:
    """The model exported to `path` (either format), ready to `translate(lines)`; its manifest says which."""
    manifest = read_manifest(path)
    if manifest["format"] == "stablehlo":
        from t2t_jax.serving.stablehlo import load_stablehlo

        return load_stablehlo(path)
    from t2t_jax.serving.ctranslate2 import CTranslate2Translator

    return CTranslate2Translator.from_export(path)
