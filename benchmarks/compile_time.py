"""Compile time of the train step (lower + compile, no run) for 6+6 and 24+24 layers of the base model, with the
layers as a Python loop and as one nn.scan body (config.model.scan_layers).

    python benchmarks/compile_time.py [--json benchmarks/compile_time.json]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp

from t2t_jax import sharding
from t2t_jax.configuration import load_config
from t2t_jax.train import step
from t2t_jax.train.state import training


def compile_seconds(layers: int, scan: bool) -> float:
    config = load_config("configs/base.py")
    config.model.update(num_encoder_layers=layers, num_decoder_layers=layers, scan_layers=scan)
    setup = training(config, 8000, sharding.make_mesh(config.mesh))
    tokens = jax.ShapeDtypeStruct((32, 64), jnp.int32)
    start = time.perf_counter()
    setup.programs.train_step.lower(
        setup.abstract, {"inputs": tokens, "targets": tokens}, step.dropout_key(0, 0), jnp.float32(1)).compile()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rows = []
    for scan in (False, True):
        six, twenty_four = compile_seconds(6, scan), compile_seconds(24, scan)
        rows.append({"scan_layers": scan, "compile_s_6+6": round(six, 2), "compile_s_24+24": round(twenty_four, 2),
                     "ratio": round(twenty_four / six, 2)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": jax.devices()[0].platform, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
