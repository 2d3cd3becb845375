"""Long sequences on this CPU: one encoder layer of the base model (d_model 512, 8 heads, d_ff 2048), batch 1,
forward and backward, at lengths 256 ... 8192, with whole attention (the plain formula, and
model.attention_implementation=dot_product: jax.nn.dot_product_attention, XLA's on a CPU, cuDNN's fused kernel on a
GPU) and with model.attention_chunk=256. Memory is
XLA's compiled temporaries (exact, from the compiled program); time the median of 3 runs (skipped where the
whole [length, length] attention would take minutes). Writes a JSON and a plot of memory against length.

    python benchmarks/long_sequences.py [--json FILE.json] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from t2t_jax.model import TransformerConfig
from t2t_jax.model.attention import attention_mask
from t2t_jax.model.transformer import EncoderLayer

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
CHUNK = 256
TIMED_UP_TO = 4096


VARIANTS = ((0, "plain"), (0, "dot_product"), (CHUNK, "plain"))  # (attention_chunk, attention_implementation)


def measure(length: int, chunk: int, implementation: str = "plain") -> dict:
    config = TransformerConfig.base(vocab_size=32000, dropout_rate=0.0, attention_chunk=chunk,
                                    attention_implementation=implementation)
    layer = EncoderLayer(config, deterministic=True)
    hidden = jnp.asarray(np.random.default_rng(0).normal(size=(1, length, 512)), jnp.float32)
    mask = attention_mask(jnp.ones((1, length), bool))
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), hidden, mask)
    loss = lambda p, x: jnp.sum(layer.apply(p, x, mask) ** 2)  # noqa: E731
    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    compiled = step.lower(params, hidden).compile()
    result = {"length": length, "chunk": chunk, "implementation": implementation,
              "temporaries_mib": round(compiled.memory_analysis().temp_size_in_bytes / 2**20, 1)}
    if length <= TIMED_UP_TO:
        jax.block_until_ready(compiled(params, hidden))
        times = []
        for _ in range(3):
            started = time.perf_counter()
            jax.block_until_ready(compiled(params, hidden))
            times.append(time.perf_counter() - started)
        result["step_ms"] = round(1000 * sorted(times)[1], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    results = []
    for length in LENGTHS:
        for chunk, implementation in VARIANTS:
            results.append(measure(length, chunk, implementation))
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": "2-core AMD EPYC VM", "layer": "base encoder layer, batch 1, fwd+bwd",
                       "results": results}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        labels = {(0, "plain"): "whole attention", (0, "dot_product"): "jax.nn.dot_product_attention",
                  (CHUNK, "plain"): f"attention_chunk={CHUNK}"}
        for (chunk, implementation), label in labels.items():
            rows = [row for row in results if (row["chunk"], row["implementation"]) == (chunk, implementation)]
            axis.plot([row["length"] for row in rows], [row["temporaries_mib"] for row in rows], "o-", label=label)
        axis.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="XLA temporaries (MiB)",
                 title="one base encoder layer, forward + backward")
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
