"""Summarization: CNN/DailyMail articles to their highlights, as T2T's summarize_cnn_dailymail32k problem with the
hyperparameters T2T's README recommends for it (--model=transformer --hparams_set=transformer_prepend).

Data: `tfds:cnn_dailymail` (TFDS's non-anonymized version; its "article" feature is the source, "highlights" the
target, one highlight per line), train split to train, validation to evaluate. As T2T's problem: one shared
subword vocabulary of ~32k (T2T: approx_vocab_size 2**15; here a 32768-piece SentencePiece BPE model).
Articles are long (781 words on average, See et al. 2017): a training article over 750 tokens is cut to its
first 749 tokens + EOS (data.truncate_sources), as T2T's CNN/DailyMail setups cut inputs at max_input_seq_length
750 (transformer_tall_train_uniencdec and the other transformer_tall_*uniencdec sets; transformer_prepend itself
cuts nothing and keeps article + summary up to its 4096-token batch). Summaries over 128 tokens (rare:
highlights average 56 words) are skipped, not cut: T2T's sets cut targets at 100 tokens, which would teach the
model to stop mid-sentence.

Model: transformer_prepend is transformer_base_v2 run as a decoder over article + summary; here it is the
encoder-decoder with transformer_base_v2's settings: d_model 512, d_ff 2048, 8 heads, 6+6 layers, pre-norm
(layer_preprocess_sequence 'n'), dropout 0.1 on residuals, attention weights and the ReLU (T2T's
layer_prepostprocess_dropout, attention_dropout, relu_dropout), one embedding matrix shared by inputs, outputs
and the softmax (the prepended model has only one). Training: Adam(0.9, 0.98, 1e-9), label smoothing 0.1, the
rsqrt schedule with 8000 warmup steps and scale 2.0 (T2T's legacy noam schedule: 5000 x 0.002 (Adam) x
learning_rate 0.2), 4096 tokens per device per batch (T2T's batch_size), 250k steps (t2t-trainer's default
--train_steps). Decoding: T2T's decode_hparams defaults, beam 4 and alpha 0.6. `t2t-jax eval` reports ROUGE-1/2/L
and ROUGE-Lsum (decode.metric='rouge'); T2T's eval computed approximate ROUGE-2/L F on the eval set.
"""

from t2t_jax.configuration import default_config


def get_config():
    config = default_config()
    config.model.update(
        d_model=512, d_ff=2048, num_heads=8, num_encoder_layers=6, num_decoder_layers=6, norm_placement="pre",
        dropout_rate=0.1, attention_dropout_rate=0.1, relu_dropout_rate=0.1, share_embeddings="all",
    )
    config.data.update(
        train="tfds:cnn_dailymail", eval="tfds:cnn_dailymail?split=validation",
        source_lang="article", target_lang="highlights", vocab_size=32768, batch_tokens=4096,
        max_source_length=750, truncate_sources=True, max_target_length=128,
    )
    config.train.update(
        steps=250_000, schedule="rsqrt", learning_rate_scale=2.0, warmup_steps=8000, label_smoothing=0.1,
        log_every=100, eval_every=5000, checkpoint_every=2000, keep_checkpoints=5,
        eval_bleu=False,  # BLEU during training says little about summaries: score with `t2t-jax eval` (ROUGE)
    )
    config.decode.update(beam_size=4, alpha=0.6, metric="rouge")
    config.model.dtype = "auto"  # bfloat16 compute on GPUs/TPUs (float32 parameters), float32 on CPUs
    return config
