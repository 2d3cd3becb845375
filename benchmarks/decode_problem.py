"""The decoding-speed problem of benchmarks/ctranslate2_vs_jax.py and benchmarks/decode_flags.py as flags: the base
model over a vocabulary, `batch` random sources of `source_length` tokens, beam search up to `max_length`."""

import argparse


def add_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--source_length", type=int, default=24)
    parser.add_argument("--max_length", type=int, default=74)
    parser.add_argument("--beam_size", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=rounds)
