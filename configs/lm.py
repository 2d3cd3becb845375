"""A small decoder-only language model on the English side of Multi30k, trained in <= 10 minutes on a CPU.

Data: one caption per line (`text:PATH`: a one-sided source, no source side); by default
../shared/data/multi30k/train.en (valid.en to evaluate) next to this repository, else data/multi30k/. Any text
file works: `--config.data.train=text:my.txt --config.data.eval=text:my_valid.txt`.
Eval reports per-token loss, perplexity and bits per byte (comparable across vocabularies);
benchmarks/lm_bigram.py scores a smoothed bigram on the same split and tokens. Then:
    t2t-jax generate --workdir runs/lm --prompt "A dog" --temperature 0.8 --top_p 0.9 --num_samples 3
"""

from t2t_jax.configuration import default_config, example_data_dir

DATA_DIR = example_data_dir(__file__, "multi30k")


def get_config():
    config = default_config()
    # The decoder of configs/multi30k.py alone, one layer deeper, more dropout (29k short lines overfit fast);
    # the cosine decays over the 9-minute training budget, the last 5 checkpoints (over its last 30%) averaged.
    config.model.update(
        kind="decoder_only", d_model=256, d_ff=1024, num_heads=4, num_decoder_layers=4, norm_placement="pre",
        dropout_rate=0.2, attention_dropout_rate=0.0, relu_dropout_rate=0.0,
    )
    config.data.update(
        train=f"text:{DATA_DIR}/train.en", eval=f"text:{DATA_DIR}/valid.en", source_lang="", target_lang="en",
        vocab_size=4000, packing=True, pack_length=128, batch_tokens=2048, max_target_length=128,
    )
    config.train.update(
        steps=100_000, schedule="cosine", schedule_clock="time", max_seconds=9 * 60, learning_rate=2e-3,
        warmup_steps=200, label_smoothing=0.0, log_every=50, eval_every=400, checkpoint_every=100,
        keep_checkpoints=5, average_last=5, average_window=0.3, eval_bleu=False,
    )
    return config
