"""Ensembles on Multi30k en->de: two models of configs/multi30k.py trained with different seeds (train.seed and
data.seed) for the same number of updates (a step-clocked cosine: the same models on a busy or a quiet machine),
each alone and both as an ensemble (`Translator.from_workdirs`), beam 4, on test_2016_flickr; the decoding time of
1 and 2 models, measured alternately in the same run.

    python benchmarks/ensemble.py [--steps 240] [--json benchmarks/cpu/ensemble.json]
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))
import multi30k  # noqa: E402  (configs/multi30k.py: where the data is)

from t2t_jax.cli import read_lines  # noqa: E402
from t2t_jax.evaluate import score  # noqa: E402
from t2t_jax.translate import Translator  # noqa: E402


def train(workdir: str, seed: int, steps: int) -> None:
    if os.path.isdir(os.path.join(workdir, "averaged")):
        return
    subprocess.run([sys.executable, "-m", "t2t_jax", "train", "--config", "configs/multi30k.py", "--workdir", workdir,
                    f"--config.train.seed={seed}", f"--config.data.seed={seed}", "--config.train.schedule_clock=steps",
                    f"--config.train.steps={steps}", "--config.train.max_seconds=0",
                    f"--config.train.checkpoint_every={steps // 10}"], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240, help="updates of each model")
    parser.add_argument("--workdirs", default="runs/ensemble_seed")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    workdirs = [f"{args.workdirs}{seed}" for seed in (0, 1)]
    for seed, workdir in enumerate(workdirs):
        train(workdir, seed, args.steps)
    sources = read_lines(f"{multi30k.DATA_DIR}/test.en")
    references = read_lines(f"{multi30k.DATA_DIR}/test.de")
    translators = {"seed 0": Translator.from_workdir(workdirs[0], "averaged"),
                   "seed 1": Translator.from_workdir(workdirs[1], "averaged"),
                   "ensemble": Translator.from_workdirs(workdirs, "averaged")}
    for translator in translators.values():
        translator.translate(sources[:64])  # compile the common shapes
    rows, seconds = {}, {name: [] for name in translators}
    for _ in range(2):  # alternate, so that both see the same machine
        for name, translator in translators.items():
            started = time.perf_counter()
            hypotheses = translator.translate(sources)
            seconds[name].append(time.perf_counter() - started)
            rows[name] = {"sacrebleu": round(score(hypotheses, references, "de").bleu, 2)}
    for name in rows:
        rows[name]["decode_s"] = round(min(seconds[name]), 1)
    single = (rows["seed 0"]["decode_s"] + rows["seed 1"]["decode_s"]) / 2
    result = {"task": "Multi30k en->de test_2016_flickr (1000 sentences), beam 4, averaged checkpoints",
              "train_steps_each": args.steps, "rows": rows,
              "ensemble_decode_time_over_one_model": round(rows["ensemble"]["decode_s"] / single, 2)}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
