"""Multi30k English->German (29k caption pairs) on a CPU in <= 30 minutes, vocabulary training included.

Data: line-aligned text files; by default ../shared/data/multi30k next to this repository, else
data/multi30k/ (train.en, train.de, valid.en, valid.de from github.com/multi30k/dataset, data/task1/raw).
Other directions change only the data flags, e.g. German->English:
    --config.data.train=text:DIR/train.de,DIR/train.en --config.data.eval=text:DIR/valid.de,DIR/valid.en
    --config.data.source_lang=de --config.data.target_lang=en
"""

from t2t_jax.configuration import default_config, example_data_dir

DATA_DIR = example_data_dir(__file__, "multi30k")


def get_config():
    config = default_config()
    # A small pre-norm model, light regularization, and a cosine schedule that decays over the 28-minute training
    # budget (train.schedule_clock=time), not over a step count: a slower CPU makes fewer updates, a faster one
    # more (about 2200 of ~2048 tokens, 7-8 epochs, on the 2-core VM this was tuned on), and both end annealed.
    # The 5 checkpoints averaged are taken evenly over the last 30% of the budget. Half the batch of the first
    # recipe (4096 tokens, 720 updates) gives twice the updates at the same tokens per second: valid BLEU 39.01
    # against 35.18 (benchmarks/README.md).
    config.model.update(
        d_model=256, d_ff=1024, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, norm_placement="pre",
        dropout_rate=0.1, attention_dropout_rate=0.0, relu_dropout_rate=0.0,
    )
    config.data.update(
        train=f"text:{DATA_DIR}/train.en,{DATA_DIR}/train.de", eval=f"text:{DATA_DIR}/valid.en,{DATA_DIR}/valid.de",
        source_lang="en", target_lang="de", vocab_size=8000, packing=True, pack_length=128, batch_tokens=2048,
        max_source_length=128, max_target_length=128,
    )
    config.train.update(
        steps=100_000, schedule="cosine", schedule_clock="time", max_seconds=28 * 60, learning_rate=2e-3,
        warmup_steps=200, label_smoothing=0.1, log_every=50, eval_every=180, checkpoint_every=100,
        keep_checkpoints=5, average_last=5, average_window=0.3, eval_bleu=True, bleu_examples=300,
    )
    # Length penalty chosen on valid (1014 sentences, sacreBLEU of the averaged model; the paper tuned alpha on
    # its dev set too): alpha 0.3 34.47, 0.6 34.69, 0.8 35.01, 1.0 35.18, 1.3 35.22, 1.6 32.42.
    config.decode.update(alpha=1.0)
    return config
