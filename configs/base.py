"""The paper's Transformer (base) on WMT14 English->German (Vaswani et al. 2017, Table 3 'base').

d_model 512, d_ff 2048, 8 heads, 6+6 layers, P_drop 0.1, label smoothing 0.1, shared 37k-ish BPE vocabulary
(32k SentencePiece here), Adam(0.9, 0.98, 1e-9) with the rsqrt schedule and 4000 warmup steps, 100k steps of
~25k source + 25k target tokens (gradient accumulation tops up the batch on fewer devices), average of the
last 5 checkpoints, beam 4, alpha 0.6, max output length = source length + 50. newstest2013 validates.
"""

from t2t_jax.configuration import default_config


def get_config():
    config = default_config()  # the model defaults are the paper's base model
    config.data.update(
        train="tfds:wmt14_translate/de-en", eval="tfds:wmt14_translate/de-en?split=validation",
        # per device: 8 devices x 3125 = the paper's 25k tokens per update (its 8 P100s); fewer devices accumulate
        source_lang="en", target_lang="de", vocab_size=32000, batch_tokens=3125,
    )
    config.train.update(
        steps=100_000, warmup_steps=4000, tokens_per_update=25_000, label_smoothing=0.1,
        log_every=100, eval_every=5000, checkpoint_every=2000, keep_checkpoints=5, average_last=5,
        eval_bleu=True, bleu_examples=0,
    )
    config.decode.update(beam_size=4, alpha=0.6, max_extra_length=50)
    config.model.dtype = "auto"  # bfloat16 compute on GPUs/TPUs (float32 parameters), float32 on CPUs
    return config
