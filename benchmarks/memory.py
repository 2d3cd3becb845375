"""Estimated device memory of a train step (base and big, bfloat16 compute, rematerialization off/on), from XLA's
buffer assignment of the compiled step (compiled here, never run), and the largest batch that fits 16, 40 and
80 GiB. Memory grows linearly with the batch, so two batch sizes give the line.

    python benchmarks/memory.py [--json benchmarks/memory.json]

Compiled for this machine's backend: on a CPU this is XLA:CPU's buffer assignment, an estimate of what a GPU
needs (the GPU compiler fuses differently); benchmarks/gpu/*.json holds allocator peaks measured on an H200.
"""

import argparse
import json

import jax
import jax.numpy as jnp

from t2t_jax import sharding
from t2t_jax.configuration import default_config
from t2t_jax.train import step
from t2t_jax.train.state import training

LENGTH, VOCAB, BATCHES, BUDGETS_GIB = 128, 32000, (64, 128), (16, 40, 80)
SIZES = {"base": dict(), "big": dict(d_model=1024, d_ff=4096, num_heads=16, dropout_rate=0.3)}


def estimate_gib(size: str, remat: str, batch: int) -> float:
    config = default_config()
    config.model.update(SIZES[size], dtype="bfloat16", remat=remat)
    setup = training(config, VOCAB, sharding.make_mesh(config.mesh))
    tokens = jax.ShapeDtypeStruct((batch, LENGTH), jnp.int32)
    compiled = setup.programs.train_step.lower(
        setup.abstract, {"inputs": tokens, "targets": tokens}, step.dropout_key(0, 0), jnp.float32(1)).compile()
    memory = compiled.memory_analysis()
    used = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    return (used - memory.alias_size_in_bytes) / 2**30


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rows = []
    for size in SIZES:
        for remat in ("none", "full"):
            (b1, m1), (b2, m2) = [(batch, estimate_gib(size, remat, batch)) for batch in BATCHES]
            per_sentence = (m2 - m1) / (b2 - b1)
            fixed = m1 - per_sentence * b1
            fits = {f"{budget}GiB": int((budget * 0.95 - fixed) / per_sentence) for budget in BUDGETS_GIB}
            estimates = {f"batch{b}_gib": round(m, 2) for b, m in ((b1, m1), (b2, m2))}
            rows.append({"model": size, "remat": remat, **estimates, "fixed_gib": round(fixed, 2),
                         "gib_per_sentence": round(per_sentence, 4), "max_batch_x128": fits})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine_backend": jax.devices()[0].platform, "length": LENGTH, "vocab": VOCAB,
                       "dtype": "bfloat16 compute, float32 params and Adam state", "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
