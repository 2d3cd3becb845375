"""Sinusoidal versus relative positions (Shaw et al. 2018) on sequences longer than any seen in training.

    nice -n 10 python benchmarks/relative_positions.py [--steps 600] [--per_length 100] \
        [--json benchmarks/cpu/relative_positions.json]

Trains configs/reverse.py (algorithmic:reverse, sources of 1-20 digits) twice, the same steps and data, once with
model.position_encoding=sinusoidal and once with relative (max_relative_position 20, no absolute positions), then
beam-decodes (the config's decode settings) `per_length` random digit sequences of each length in LENGTHS and
counts exact reversals. Sequences up to 60 digits (61 tokens with EOS) fit data.max_source_length 64.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from t2t_jax.translate import Translator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENGTHS = (10, 20, 30, 40, 60)
ENCODINGS = ("sinusoidal", "relative")


def train(workdir: str, encoding: str, steps: int) -> float:
    """Trains configs/reverse.py with `encoding` for `steps` steps in a subprocess; returns the seconds it took."""
    command = [sys.executable, "-m", "t2t_jax", "train", "--config", "configs/reverse.py", "--workdir", workdir,
               f"--config.model.position_encoding={encoding}", f"--config.train.steps={steps}",
               f"--config.train.eval_every={steps}", f"--config.train.checkpoint_every={steps}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"training {encoding} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def test_sequences(per_length: int, seed: int = 1234) -> dict[int, list[str]]:
    """`per_length` random digit sequences of each length, as the reverse task writes them ("3 1 4")."""
    rng = np.random.default_rng(seed)
    return {length: [" ".join(map(str, rng.integers(0, 10, length))) for _ in range(per_length)]
            for length in LENGTHS}


def last_rows(workdir: str) -> dict[str, dict]:
    """The last train and eval rows of workdir/metrics.jsonl."""
    rows: dict[str, dict] = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            rows[row["kind"]] = row
    return rows


def measure(encoding: str, steps: int, sequences: dict[int, list[str]], root: str) -> dict:
    workdir = os.path.join(root, encoding)
    train_seconds = train(workdir, encoding, steps)
    translator = Translator.from_workdir(workdir)
    exact = {}
    for length, sources in sequences.items():
        outputs = translator.translate(sources)
        wanted = [" ".join(reversed(source.split())) for source in sources]
        exact[length] = sum(output.split() == target.split() for output, target in zip(outputs, wanted)) / len(sources)
    rows = last_rows(workdir)
    result = {"position_encoding": encoding, "train_seconds": round(train_seconds, 1),
              "final_train_loss": rows.get("train", {}).get("loss"), "eval": rows.get("eval"),
              "exact_match": {str(length): exact[length] for length in LENGTHS}}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--per_length", type=int, default=100)
    parser.add_argument("--json", default="benchmarks/cpu/relative_positions.json")
    args = parser.parse_args()
    sequences = test_sequences(args.per_length)
    with tempfile.TemporaryDirectory() as root:
        results = [measure(encoding, args.steps, sequences, root) for encoding in ENCODINGS]
    print("| length | " + " | ".join(ENCODINGS) + " |")
    print("|---|" + "---|" * len(ENCODINGS))
    for length in LENGTHS:
        marks = " (seen)" if length <= 20 else ""
        print(f"| {length}{marks} | " + " | ".join(f"{r['exact_match'][str(length)]:.1%}" for r in results) + " |")
    if args.json:
        report = {"command": " ".join(["python", *sys.argv]), "config": "configs/reverse.py",
                  "train_lengths": "1-20", "steps": args.steps, "sequences_per_length": args.per_length,
                  "decode": "the config's beam search (beam 4, alpha 0.6)", "backend": jax.default_backend(),
                  "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                  "results": results}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
