"""A small model for experiments on your own text files (set data.train / data.eval on the command line).

The model is `TransformerConfig.tiny` (d_model 128, 2+2 layers): the same "tiny" in Python and on the command line.
"""

from t2t_jax.configuration import default_config, model_section
from t2t_jax.model import TransformerConfig


def get_config():
    config = default_config()
    config.model.update(model_section(TransformerConfig.tiny(vocab_size=1)))
    config.data.update(vocab_size=8000, batch_tokens=4096)
    config.train.update(steps=20_000, warmup_steps=2000, log_every=100, eval_every=1000, checkpoint_every=1000)
    return config
