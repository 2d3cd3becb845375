"""`t2t-jax bench` on a tiny model: runs with tensorflow unimportable (as on the GPU image), writes its JSON, and
its figures hang together (analytic FLOPs vs XLA's count, tokens/s vs step time, MFU vs the peak)."""

import json
import subprocess
import sys

from train_helpers import ROOT, assert_clear_error, config_flags, run_cli

from t2t_jax.bench import analytic_train_flops
from t2t_jax.configuration import load_config, model_config

MODEL = {"d_model": 32, "d_ff": 64, "num_heads": 2}
TINY = config_flags(model=MODEL)
ARGS = ["bench", "--config", "configs/tiny.py", "--steps", "2", "--batch", "4", "--length", "16", "--vocab", "64",
        "--decode_batch", "2", "--decode_source_length", "6", *TINY]

# The bench command with every tensorflow import failing, as on a machine without tensorflow.
WITHOUT_TENSORFLOW = """
import importlib.abc, sys
class NoTensorflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, NoTensorflow())
from t2t_jax.cli import main
main(sys.argv[1:])
"""


def test_bench_runs_without_tensorflow_and_its_figures_agree(tmp_path):
    out = tmp_path / "bench.json"
    process = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *ARGS, "--json", str(out)], cwd=ROOT,
                             capture_output=True, timeout=300)
    assert process.returncode == 0, process.stderr.decode()[-3000:]
    result = json.loads(out.read_text())
    train, decode = result["train"], result["decode"]
    config = load_config(f"{ROOT}/configs/tiny.py", [(f"model.{key}", str(value)) for key, value in MODEL.items()])
    assert train["model_flops_per_step"] == int(analytic_train_flops(model_config(config, 64), 4, 16, 16))
    assert 0.8 <= train["xla_flops_per_step"] / train["model_flops_per_step"] <= 1.5  # XLA also counts softmax etc.
    assert abs(train["tokens_per_s"] * train["step_s"] - 4 * 16 * 2) <= 2  # source + target tokens of one step
    achieved = train["model_flops_per_step"] / train["step_s"] / 1e12
    assert abs(train["mfu"] - achieved / train["peak_tflops"]) <= 0.01 and 0 < train["mfu"] < 1
    assert decode["batch"] == 2 and decode["beam_size"] == 4 and decode["sentences_per_s"] > 0
    assert "train: compile" in process.stdout.decode() and "beam-4 decode" in process.stdout.decode()


def test_bench_rejects_zero_steps():
    assert_clear_error(run_cli(*ARGS[:3], "--steps", "0"), "--steps", "at least 1")
