"""The embedded default: reverse sequences of 1-20 digits ("3 1 4 1 5" -> "5 1 4 1 3").

No download: the data is generated (algorithmic:reverse) with a fixed 14-symbol vocabulary. Trains a small
Transformer in a few minutes on a laptop CPU, then `t2t-jax decode` reverses unseen sequences.
"""

from t2t_jax.configuration import default_config


def get_config():
    config = default_config()
    config.model.update(
        d_model=128, d_ff=512, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0
    )
    config.data.update(
        train="algorithmic:reverse", eval="algorithmic:reverse", algorithmic_min_length=1,
        algorithmic_max_length=20, algorithmic_eval_examples=500, packing=True, pack_length=64,
        batch_tokens=2048, max_source_length=64, max_target_length=64,
    )
    config.train.update(
        steps=2000, warmup_steps=400, learning_rate_scale=1.0, label_smoothing=0.0,
        log_every=100, eval_every=500, checkpoint_every=500, keep_checkpoints=2,
    )
    return config
