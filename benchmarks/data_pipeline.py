"""Data pipeline throughput and padding on Multi30k (text: URI), with length bucketing and with packing.

    python benchmarks/data_pipeline.py [--data-dir ../shared/data/multi30k] [--seconds 15]

Counts source + target positions per second (padding included, as a train step consumes them) and real tokens
per second, the padding fraction of each side, the distinct batch shapes, and the time to the first batch.
Also an exact table of bucketing padding / shapes for other bucket growth factors (from the token lengths).
Writes benchmarks/data_pipeline.json and prints a markdown table.
"""

import argparse
import collections
import json
import os
import pathlib
import platform
import tempfile
import time

import ml_collections
import numpy as np

from t2t_jax.data import batching, pipeline
from t2t_jax.data.examples import encode_with_eos

REPO = pathlib.Path(__file__).resolve().parents[1]
FLOOR_TOKENS_PER_S = 8000  # 10x what one base-model train step consumes on this CPU (~800 tokens/s)


def config(data_dir, vocab_size, packing):
    return ml_collections.ConfigDict({
        "train": f"text:{data_dir}/train.en,{data_dir}/train.de",
        "eval": f"text:{data_dir}/valid.en,{data_dir}/valid.de",
        "source_lang": "en", "target_lang": "de", "tfds_data_dir": "", "vocab_path": "", "vocab_size": vocab_size,
        "vocab_model_type": "bpe", "vocab_sample_lines": 1_000_000, "max_source_length": 256,
        "max_target_length": 256, "batch_tokens": 4096, "batch_size": 0, "packing": packing, "pack_length": 256,
        "shuffle_buffer": 50_000, "seed": 0, "algorithmic_min_length": 1, "algorithmic_max_length": 20,
        "algorithmic_eval_examples": 1000,
    })


def measure(cfg, tokenizer, seconds):
    start_wall = time.perf_counter()
    batches = pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1)
    next(batches)
    first_batch_s = time.perf_counter() - start_wall
    counts = collections.Counter()
    shapes = set()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start_wall < seconds:
        batch = next(batches)
        shapes.add((batch["inputs"].shape, batch["targets"].shape))
        for side in ("inputs", "targets"):
            counts[f"{side}_positions"] += batch[side].size
            counts[f"{side}_tokens"] += int(np.count_nonzero(batch[side]))
        counts["batches"] += 1
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    with tempfile.TemporaryDirectory() as state_dir:
        start = time.perf_counter()
        batches.save(state_dir)
        save_s = time.perf_counter() - start
        state_mb = sum(f.stat().st_size for f in pathlib.Path(state_dir).iterdir()) / 2**20
        start = time.perf_counter()
        pipeline.train_iterator(cfg, tokenizer, process_index=0, process_count=1).restore(state_dir)
        restore_s = time.perf_counter() - start
    positions = counts["inputs_positions"] + counts["targets_positions"]
    tokens = counts["inputs_tokens"] + counts["targets_tokens"]
    return {
        "positions_per_s": positions / wall,
        "tokens_per_s": tokens / wall,
        "target_padding": 1 - counts["targets_tokens"] / counts["targets_positions"],
        "source_padding": 1 - counts["inputs_tokens"] / counts["inputs_positions"],
        "batches": counts["batches"],
        "distinct_shapes": len(shapes),
        "first_batch_s": first_batch_s,
        "cpu_cores_busy": cpu / wall,
        "x_floor": positions / wall / FLOOR_TOKENS_PER_S,
        "iterator_save_s": save_s,
        "iterator_restore_s": restore_s,
        "iterator_state_mb": state_mb,
    }


def bucket_growth_table(data_dir, tokenizer):
    """Exact steady-state bucketing padding per growth factor: each example pads to its bucket's length."""
    lines = {side: (data_dir / f"train.{side}").read_text(encoding="utf-8").splitlines() for side in ("en", "de")}
    source = np.array([len(ids) for ids in encode_with_eos(tokenizer, lines["en"])])
    target = np.array([len(ids) for ids in encode_with_eos(tokenizer, lines["de"])])
    rows = []
    for growth in (1.1, 1.2, 1.3):
        lengths = np.array(batching.bucket_lengths(256, growth))
        padded = lengths[np.searchsorted(lengths, np.maximum(source, target))]
        rows.append({"growth": growth, "buckets_up_to_256": len(lengths), "buckets_used": len(set(padded)),
                     "target_padding": 1 - target.sum() / padded.sum(),
                     "source_padding": 1 - source.sum() / padded.sum()})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement time per configuration")
    parser.add_argument("--vocab-sizes", default="8000,32000")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "data_pipeline.json"))
    args = parser.parse_args()
    data_dir = pathlib.Path(args.data_dir)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
               "data": "Multi30k train en->de (29,000 pairs)", "batch_tokens": 4096, "pack_length": 256,
               "floor_tokens_per_s": FLOOR_TOKENS_PER_S, "runs": [], "bucket_growth": {}}
    for vocab_size in map(int, args.vocab_sizes.split(",")):
        with tempfile.TemporaryDirectory() as workdir:
            tokenizer = pipeline.build_vocabulary(config(data_dir, vocab_size, False), workdir, process_index=0)
            for mode, packing in (("bucketing", False), ("packing", True)):
                run = measure(config(data_dir, vocab_size, packing), tokenizer, args.seconds)
                results["runs"].append({"vocab_size": vocab_size, "mode": mode, **run})
            results["bucket_growth"][vocab_size] = bucket_growth_table(data_dir, tokenizer)
    pathlib.Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results):
    lines = ["| vocab | mode | positions/s | real tokens/s | x floor | padding (both sides) | target padding | "
             "source padding | shapes | "
             "first batch | CPU cores busy | iterator state: save / restore / size |", "|" + "---|" * 12]
    for run in results["runs"]:
        lines.append(f"| {run['vocab_size']} | {run['mode']} | {run['positions_per_s']:,.0f} | "
                     f"{run['tokens_per_s']:,.0f} | "
                     f"{run['x_floor']:.0f}x | {1 - run['tokens_per_s'] / run['positions_per_s']:.1%} | "
                     f"{run['target_padding']:.1%} | {run['source_padding']:.1%} | "
                     f"{run['distinct_shapes']} | {run['first_batch_s']:.1f} s | {run['cpu_cores_busy']:.2f} | "
                     f"{run['iterator_save_s']:.1f} s / {run['iterator_restore_s']:.1f} s / "
                     f"{run['iterator_state_mb']:.0f} MB |")
    lines += ["", "| vocab | bucket growth | buckets (max 256) | buckets used | target padding | source padding |",
              "|" + "---|" * 6]
    for vocab_size, rows in results["bucket_growth"].items():
        for row in rows:
            lines.append(f"| {vocab_size} | {row['growth']} | {row['buckets_up_to_256']} | {row['buckets_used']} | "
                         f"{row['target_padding']:.1%} | {row['source_padding']:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
