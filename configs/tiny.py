"""A small model for experiments on your own text files (set data.train / data.eval on the command line)."""

from t2t_jax.configuration import default_config


def get_config():
    config = default_config()
    config.model.update(d_model=256, d_ff=1024, num_heads=4, num_encoder_layers=3, num_decoder_layers=3)
    config.data.update(vocab_size=8000, batch_tokens=4096)
    config.train.update(steps=20_000, warmup_steps=2000, log_every=100, eval_every=1000, checkpoint_every=1000)
    return config
