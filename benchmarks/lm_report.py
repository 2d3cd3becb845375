"""Scores a trained configs/lm.py workdir against a smoothed bigram on the same split and tokens, and samples it.

    python benchmarks/lm_report.py --workdir runs/lm --json benchmarks/cpu/lm.json

Validation perplexity and bits per byte of the language model's averaged checkpoint (Generator.score: the full
forward pass) and of an interpolated Kneser-Ney bigram (t2t_jax.baselines) fitted on the training text with the
workdir's vocabulary; then samples (temperature 0.8, top-p 0.9), greedy and beam-4 continuations of a few prompts.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from t2t_jax import Generator
from t2t_jax.baselines import KneserNeyBigram
from t2t_jax.configuration import load_workdir_config
from t2t_jax.data.tokenizer import Tokenizer

PROMPTS = ["A dog", "Two men are", "A woman in a red", "A group of children", ""]


def lines(uri: str) -> list[str]:
    return [line for line in open(uri.removeprefix("text:"), encoding="utf-8").read().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkpoint", default="averaged")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    config = load_workdir_config(args.workdir)
    train, valid = lines(config.data.train), lines(config.data.eval)
    valid_bytes = sum(len(line.encode()) + 1 for line in valid)
    generator = Generator.from_workdir(args.workdir, args.checkpoint)
    start = time.perf_counter()
    scores = generator.score(valid)
    lm_nll, tokens = -sum(total for total, _ in scores), sum(count for _, count in scores)
    score_seconds = time.perf_counter() - start
    tokenizer: Tokenizer = generator.tokenizer

    def ids(texts: list[str]) -> list[list[int]]:
        return [[*tokenizer.encode(text), Tokenizer.EOS_ID] for text in texts]

    bigram = KneserNeyBigram(ids(train), tokenizer.vocab_size)
    bigram_nll, bigram_tokens = bigram.nll(ids(valid))
    assert bigram_tokens == tokens
    result = {
        "workdir": args.workdir, "checkpoint": args.checkpoint, "step": generator.step,
        "valid_sentences": len(valid), "valid_tokens": tokens, "valid_bytes": valid_bytes,
        "vocab_size": tokenizer.vocab_size,
        "lm": {"perplexity": round(math.exp(lm_nll / tokens), 3), "bits_per_byte": round(lm_nll / math.log(2) /
                                                                                          valid_bytes, 4)},
        "bigram_kneser_ney": {"perplexity": round(math.exp(bigram_nll / tokens), 3),
                              "bits_per_byte": round(bigram_nll / math.log(2) / valid_bytes, 4)},
        "score_seconds": round(score_seconds, 1),
        "samples_t0.8_p0.9": dict(zip(PROMPTS, generator.generate(PROMPTS, max_length=40, temperature=0.8,
                                                                  top_p=0.9, num_samples=2, seed=0))),
        "greedy": {prompt: texts[0] for prompt, texts in zip(PROMPTS, generator.generate(
            PROMPTS, max_length=40, temperature=0.0))},
        "beam4": {prompt: texts[0] for prompt, texts in zip(PROMPTS, generator.generate(
            PROMPTS, max_length=40, beam_size=4, alpha=0.6))},
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
