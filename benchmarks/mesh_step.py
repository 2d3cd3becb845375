"""Train-step time on a mixed mesh of simulated CPU devices, and how many "[SPMD] Involuntary full
rematerialization" warnings its compilation printed: the reverse demo's model (d_model 128, 8 heads, 2+2 layers),
1024 tokens per device, median of 30 steps after 3 warm-up steps. One subprocess per mesh.

    python benchmarks/mesh_step.py [--json benchmarks/cpu/mesh_step.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESHES = ((2, 2, 1), (2, 2, 2))


def measure(data: int, fsdp: int, tensor: int) -> dict:
    import tempfile

    import jax

    from t2t_jax import sharding
    from t2t_jax.configuration import load_config
    from t2t_jax.train import step
    from t2t_jax.train.loop import Trainer

    config = load_config(os.path.join(ROOT, "configs", "reverse.py"))
    config.model.update(num_heads=8)
    config.data.update(batch_tokens=1024, pack_length=64)
    config.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
    trainer = Trainer(config, tempfile.mkdtemp())
    batches = [sharding.global_batch(next(trainer.iterator), trainer.batch_sharding) for _ in range(4)]
    state, times = trainer.state, []
    for number in range(33):
        started = time.perf_counter()
        state, metrics = trainer.train_step(state, batches[number % 4], step.dropout_key(0, number), 1.0)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - started)
    return {"mesh": [data, fsdp, tensor], "step_ms_median": round(1000 * sorted(times[3:])[15], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="")
    parser.add_argument("--mesh", default="", help=argparse.SUPPRESS)  # internal: measure this mesh here
    args = parser.parse_args()
    if args.mesh:
        print("RESULT " + json.dumps(measure(*map(int, args.mesh.split(",")))))
        return
    results = []
    for mesh in MESHES:
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={math.prod(mesh)}"}
        run = subprocess.run([sys.executable, __file__, "--mesh", ",".join(map(str, mesh))], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        result = json.loads(run.stdout.split("RESULT ")[-1])
        result["involuntary_rematerializations"] = run.stderr.count("Involuntary full rematerialization")
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
