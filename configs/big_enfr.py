"""The paper's Transformer (big) on WMT14 English->French (Table 2: 41.8 BLEU): configs/big.py's model and
training (300k steps, the average of the last 20 checkpoints) on configs/base_enfr.py's data, with P_drop 0.1:
"The Transformer (big) model trained for English-to-French used dropout rate Pdrop = 0.1, instead of 0.3."
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base_enfr  # noqa: E402
import big  # noqa: E402


def get_config():
    config = big.get_config()
    config.data.update(base_enfr.get_config().data)
    config.model.dropout_rate = 0.1
    return config
