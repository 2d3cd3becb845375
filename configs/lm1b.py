"""A language model on the One Billion Word benchmark (lm1b) at T2T's size: T2T's languagemodel_lm1b32k problem
with the hyperparameters its README suggests for it (--model=transformer --hparams_set=transformer_base).

Data: `tfds:lm1b` (~30M training sentences; the feature 'text', no source side: data.source_lang=''), its test
split to evaluate (lm1b has no validation split); a 32768-piece SentencePiece vocabulary (T2T: 2**15 subwords).
Sentences are packed into rows of 256 tokens, 4096 tokens per device per batch (T2T's batch_size).
Model: transformer_base's decoder alone (T2T's transformer without inputs): d_model 512, d_ff 2048, 8 heads,
6 layers, pre-norm (base_v2), dropout 0.1, one embedding matrix for inputs and softmax; Adam(0.9, 0.98, 1e-9),
the rsqrt schedule with 8000 warmup steps and scale 2.0 (T2T's legacy noam: 5000 x 0.002 x 0.2), no label
smoothing (perplexity is the metric). Eval reports
perplexity and bits per byte. `t2t-jax plan --config configs/lm1b.py --target v5e-16` sizes it for a slice.
"""

from t2t_jax.configuration import default_config


def get_config():
    config = default_config()
    config.model.update(
        kind="decoder_only", d_model=512, d_ff=2048, num_heads=8, num_decoder_layers=6, norm_placement="pre",
        dropout_rate=0.1, attention_dropout_rate=0.1, relu_dropout_rate=0.1, share_embeddings="all",
    )
    config.data.update(
        train="tfds:lm1b", eval="tfds:lm1b?split=test", source_lang="", target_lang="text", vocab_size=32768,
        packing=True, pack_length=256, batch_tokens=4096, max_target_length=256,
    )
    config.train.update(
        steps=250_000, schedule="rsqrt", learning_rate_scale=2.0, warmup_steps=8000, label_smoothing=0.0,
        log_every=100, eval_every=5000, eval_examples=10_000, checkpoint_every=2000, keep_checkpoints=5,
        average_last=5, eval_bleu=False,
    )
    config.model.dtype = "auto"  # bfloat16 compute on GPUs/TPUs (float32 parameters), float32 on CPUs
    return config
