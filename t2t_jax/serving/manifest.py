"""The manifest of an exported model: `PATH/manifest.json` says what PATH holds and how to decode with it.

    {"format": "stablehlo" | "ctranslate2", "t2t_jax": "0.1.0", "step": 1200, "vocabulary": "vocab.model",
     "beam_size": 4, "alpha": 0.6, "max_extra_length": 50, "max_source_length": 256, ...}
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from t2t_jax import storage
from t2t_jax.errors import UserError

MANIFEST_FILE = "manifest.json"
FORMATS = ("stablehlo", "ctranslate2")


def package_version() -> str:
    try:
        return version("t2t-jax")
    except PackageNotFoundError:
        return "unknown"


def write_manifest(path: str, format: str, **fields: Any) -> dict[str, Any]:
    """Write PATH/manifest.json for an export of `format` with `fields` (JSON values); returns what was written."""
    manifest = {"format": format, "t2t_jax": package_version(), **fields}
    storage.write_atomically(storage.join(path, MANIFEST_FILE), (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def read_manifest(path: str) -> dict[str, Any]:
    """PATH/manifest.json, or one clear error if PATH is not an export of ours."""
    file = storage.join(path, MANIFEST_FILE)
    if not storage.exists(file):
        raise UserError(f"{path} is not an exported model (no {MANIFEST_FILE}): make one with `t2t-jax export`")
    try:
        manifest = json.loads(storage.read_bytes(file))
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{file} is not valid JSON ({error}): export the model again") from None
    if manifest.get("format") not in FORMATS:
        raise UserError(f"{file} names format {manifest.get('format')!r}; expected one of {', '.join(FORMATS)}")
    return manifest
