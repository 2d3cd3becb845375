"""`export_stablehlo` / `serving.load`: a trained model as jax.export programs, run without Flax, translating as
the Translator does."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli

from t2t_jax import serving
from t2t_jax.errors import UserError
from t2t_jax.serving.stablehlo import bucket_lengths, export_stablehlo

TINY = ["--config", "configs/reverse.py", *config_flags(
    model=TINY_MODEL, data=dict(TINY_DATA, batch_tokens=256, max_source_length=16),
    train=dict(log_every=10, eval_every=1000, checkpoint_every=1000, warmup_steps=5, average_last=0,
               schedule="constant", learning_rate="1e-2", steps=30),
    decode=dict(batch_tokens=512),
)]


def _lines():
    """16 lines of 1-7 digits (one batch of 16 x 8), 6 of 8-15 digits, an empty and a blank one, and one past
    max_source_length=16 (truncated): one batch of 8 x 16. Two shapes, so compiling stays quick."""
    rng = random.Random(0)
    digits = lambda low, high: " ".join(str(rng.randrange(10)) for _ in range(rng.randint(low, high)))
    return [digits(1, 7) for _ in range(8)] + ["", "   "] + [digits(8, 15) for _ in range(6)] + [
        digits(1, 7) for _ in range(8)] + [" ".join("7" * 30)]


LINES = _lines()


@pytest.fixture(scope="module")
def workdir(train_workdir):
    return train_workdir("stablehlo", *TINY)


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    """Through the command users run."""
    output = str(tmp_path_factory.mktemp("exports") / "reverse")
    result = run_cli("export", "--workdir", workdir, "--format", "stablehlo", "--output", output)
    assert result.returncode == 0 and "exported step" in result.stdout.decode(), result.stderr.decode()[-3000:]
    with open(os.path.join(output, "manifest.json")) as f:
        return output, json.load(f)


def test_manifest_says_how_to_decode(exported):
    output, manifest = exported
    assert json.loads(open(f"{output}/manifest.json").read()) == manifest
    assert manifest["format"] == "stablehlo" and manifest["step"] == 30
    assert (manifest["beam_size"], manifest["alpha"], manifest["max_extra_length"]) == (4, 0.6, 50)
    assert manifest["max_source_length"] == 16 and manifest["buckets"] == [8, 16]
    assert manifest["platforms"] == ["cpu", "cuda"] and manifest["dtype"] == manifest["param_dtype"] == "float32"
    for name in ["vocab.model", "params.npz"] + [f"programs/length_{n}.jaxexport" for n in manifest["buckets"]]:
        assert open(f"{output}/{name}", "rb").read(1), name


def test_buckets_are_multiples_of_8_then_doubling():
    assert bucket_lengths(20) == [8, 16, 24]
    assert bucket_lengths(256)[-2:] == [248, 256] and len(bucket_lengths(256)) == 32
    assert bucket_lengths(1000)[-3:] == [256, 512, 1000]


def test_translates_as_the_translator_does(exported, translator):
    model = serving.load(exported[0])
    assert model.translate(LINES) == translator.translate(LINES)
    assert any(len(line.split()) > 2 for line in translator.translate(LINES))  # a model that writes something
    ours, theirs = model.translate(LINES, nbest=2), translator.translate(LINES, nbest=2)
    assert [[text for text, _ in best] for best in ours] == [[text for text, _ in best] for best in theirs]
    np.testing.assert_allclose([[s for _, s in best] for best in ours], [[s for _, s in best] for best in theirs],
                               atol=1e-4)
    assert ours[8] == ours[9] == [("", 0.0), ("", 0.0)]


def test_loading_imports_neither_flax_nor_the_model(exported, translator):
    code = (
        "import json, sys; from t2t_jax import serving; "
        f"print(json.dumps(serving.load({exported[0]!r}).translate({LINES[:4]!r}))); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'orbax', 'tensorflow') "
        "or m.startswith(('t2t_jax.model', 't2t_jax.translate', 't2t_jax.configuration'))]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert json.loads(result.stdout.decode().splitlines()[-1]) == translator.translate(LINES[:4])


def test_bfloat16_halves_the_parameters(workdir, exported, tmp_path):
    output = str(tmp_path / "bf16")
    manifest = export_stablehlo(workdir, output, platforms=["cpu"], quantize="bfloat16")
    assert manifest["dtype"] == manifest["param_dtype"] == "bfloat16" and manifest["platforms"] == ["cpu"]
    assert os.path.getsize(f"{output}/params.npz") < 0.6 * os.path.getsize(f"{exported[0]}/params.npz")
    translations = serving.load(output).translate(LINES[:3] + [""], nbest=2)
    assert len(translations) == 4 and translations[-1] == [("", 0.0), ("", 0.0)]


def test_mistakes_are_one_clear_error(workdir, exported, tmp_path):
    with pytest.raises(UserError, match="already exists and is not empty"):
        export_stablehlo(workdir, exported[0])
    with pytest.raises(UserError, match="--quantize 'int8' is not supported"):
        export_stablehlo(workdir, str(tmp_path / "q"), quantize="int8")
    with pytest.raises(UserError, match="unknown platform"):
        export_stablehlo(workdir, str(tmp_path / "p"), platforms=["metal"])
    with pytest.raises(UserError, match="is not an exported model"):
        serving.load(str(tmp_path))
    with pytest.raises(UserError, match="nbest must be between 1 and the exported beam size 4"):
        serving.load(exported[0]).translate(["1 2"], nbest=5)
    assert_clear_error(run_cli("export", "--workdir", workdir, "--format", "onnx", "--output", str(tmp_path / "o")),
                       "--format")


def test_a_relative_position_model_exports_and_translates_as_the_translator_does(train_workdir, tmp_path):
    from t2t_jax.translate import Translator

    workdir = train_workdir("stablehlo_relative", *TINY, "--config.model.position_encoding=relative",
                            "--config.model.max_relative_position=4")
    export_stablehlo(workdir, str(tmp_path / "relative"))
    lines = LINES[:10]
    exported = serving.load(str(tmp_path / "relative"))
    assert exported.translate(lines) == Translator.from_workdir(workdir).translate(lines)
