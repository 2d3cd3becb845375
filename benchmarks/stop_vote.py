"""What the hosts' stop agreement costs per step: 2 local processes x 2 simulated CPU devices (gloo), each timing
`StopVote.decide` alone and beside the reverse demo's train step (d_model 128, 4096 tokens), with and without
the vote.

    python benchmarks/stop_vote.py [--json benchmarks/cpu/stop_vote.json]

Launches its own two processes through T2T_COORDINATOR; prints one JSON line per process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOTES, STEPS = 200, 20


def measure() -> dict:
    import jax
    import numpy as np

    from t2t_jax.configuration import load_config
    from t2t_jax.distributed import initialize_from_environment
    from t2t_jax.train.loop import Trainer
    from t2t_jax.train.stopping import StopVote

    initialize_from_environment()
    vote = StopVote()
    for _ in range(5):
        vote.decide((False, False))
    started = time.perf_counter()
    for _ in range(VOTES):
        vote.decide((False, False))
    vote_alone = (time.perf_counter() - started) / VOTES

    config = load_config(os.path.join(ROOT, "configs", "reverse.py"))
    config.mesh.update(data=4)
    workdir = f"/tmp/t2t_stop_vote_{os.environ['T2T_PORT']}"
    os.makedirs(workdir, exist_ok=True)
    trainer = Trainer(config, workdir)
    batch = next(trainer.iterator)

    def steps(with_vote: bool) -> float:
        for _ in range(3):
            trainer.update([batch])
        jax.block_until_ready(trainer.state)
        started = time.perf_counter()
        for _ in range(STEPS):
            trainer.update([batch])
            if with_vote:
                vote.decide((False, False))
        vote.settle()
        jax.block_until_ready(trainer.state)
        return (time.perf_counter() - started) / STEPS

    plain, voted = steps(False), steps(True)
    plain_again = steps(False)
    trainer.checkpoints.close()
    return {
        "process": jax.process_index(), "devices": jax.device_count(), "vote_alone_ms": 1e3 * vote_alone,
        "step_ms": 1e3 * float(np.mean([plain, plain_again])), "step_with_vote_ms": 1e3 * voted,
        "step_ms_runs": [1e3 * plain, 1e3 * plain_again],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(measure()), flush=True)
        return
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    processes = [subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT, stdout=subprocess.PIPE, env={
        **os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
        "T2T_COORDINATOR": f"localhost:{port}", "T2T_NUM_PROCESSES": "2", "T2T_PROCESS_ID": str(rank),
        "T2T_PORT": str(port)}) for rank in range(2)]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=900)
        results += [json.loads(line[7:]) for line in out.decode().splitlines() if line.startswith("RESULT ")]
    for result in results:
        print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
