"""The paper's Transformer (base) on WMT14 English->French (Vaswani et al. 2017, Table 2: 38.1 BLEU).

As configs/base.py (the model, Adam, the rsqrt schedule with 4000 warmup steps, ~25k + 25k tokens per update,
100k steps, the average of the last 5 checkpoints, beam 4, alpha 0.6) on the paper's English-French data: WMT14's
36M sentence pairs (tfds:wmt14_translate/fr-en) with a 32000-piece shared vocabulary; newstest2013 validates,
newstest2014 tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    config = base.get_config()
    config.data.update(
        train="tfds:wmt14_translate/fr-en", eval="tfds:wmt14_translate/fr-en?split=validation",
        source_lang="en", target_lang="fr", vocab_size=32000,
    )
    return config
