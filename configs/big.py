"""The paper's Transformer (big) on WMT14 English->German (Table 3 'big'): d_model 1024, d_ff 4096, 16 heads,
P_drop 0.3, 300k steps, average of the last 20 checkpoints; everything else as configs/base.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    config = base.get_config()
    config.model.update(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3)
    config.train.update(steps=300_000, keep_checkpoints=20, average_last=20)
    return config
