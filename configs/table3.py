"""The variations of the paper's Table 3 on top of configs/base.py, chosen by name after a colon:

    t2t-jax train --config configs/table3.py:B16 --workdir runs/table3-B16

Each variant lists the settings that differ from base and the parameter count the paper reports (millions;
None where the table leaves the cell empty). Rows are named by their group and the value that changes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402

VARIANTS = {
    "base": ({}, 65),
    # (A) number of heads, at constant computation (h * d_k = d_model)
    "A1": (dict(num_heads=1, d_k=512, d_v=512), None),
    "A4": (dict(num_heads=4, d_k=128, d_v=128), None),
    "A16": (dict(num_heads=16, d_k=32, d_v=32), None),
    "A32": (dict(num_heads=32, d_k=16, d_v=16), None),
    # (B) smaller attention key size
    "B16": (dict(d_k=16), 58),
    "B32": (dict(d_k=32), 60),
    # (C) bigger and smaller models
    "C2": (dict(num_encoder_layers=2, num_decoder_layers=2), 36),
    "C4": (dict(num_encoder_layers=4, num_decoder_layers=4), 50),
    "C8": (dict(num_encoder_layers=8, num_decoder_layers=8), 80),
    "C256": (dict(d_model=256, d_k=32, d_v=32), 28),
    "C1024": (dict(d_model=1024, d_k=128, d_v=128), 168),
    "Cff1024": (dict(d_ff=1024), 53),
    "Cff4096": (dict(d_ff=4096), 90),
    # (D) dropout and label smoothing
    "D0.0": (dict(dropout_rate=0.0), None),
    "D0.2": (dict(dropout_rate=0.2), None),
    "Dls0.0": (dict(label_smoothing=0.0), None),
    "Dls0.2": (dict(label_smoothing=0.2), None),
    # (E) learned positional embedding instead of sinusoids
    "E": (dict(position_encoding="learned"), None),
    "big": (dict(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3), 213),
}


def get_config(variant="base"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown Table 3 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    config = base.get_config()
    changes, _ = VARIANTS[variant]
    for key, value in changes.items():
        if key == "label_smoothing":
            config.train.label_smoothing = value
        else:
            config.model[key] = value
    if variant == "big":
        config.train.update(steps=300_000, keep_checkpoints=20, average_last=20)
    return config
