"""Attention of a trained reverse-task model: encoder-decoder attention learns the anti-diagonal, and the
`t2t-jax attention` command writes pictures and turns bad input into one error line.

The model (configs/reverse.py shrunk: 2+2 layers, 2 heads, d_model 64, sequences of 1-10 digits) is trained once
per test session, also under pytest-xdist, where workers share it through a lock file. It is trained to
convergence (800 steps, cosine decay to zero), not stopped mid-way: at 400 steps on a constant rate the best head's
anti-diagonal fraction ranged 0.80-0.97 over 16 seeds (so a CPU's float rounding could decide the test); trained
to the end it ranged 0.981-1.000, with every seed's eval accuracy 1.0.
"""

import os
import time

import numpy as np
import pytest
from train_helpers import assert_clear_error, reverse_config, run_cli, workdir_metrics

pytestmark = pytest.mark.slow
STEPS = 800
MAX_DIGITS = 10


def alignment_config():
    config = reverse_config(steps=STEPS, log_every=100, eval_every=STEPS, checkpoint_every=STEPS,
                            warmup_steps=50, learning_rate=3e-3, schedule="cosine")
    config.model.update(d_model=64, d_ff=128, num_heads=2, num_encoder_layers=2, num_decoder_layers=2)
    config.data.update(algorithmic_max_length=MAX_DIGITS, batch_tokens=512, pack_length=32)
    return config


def shared_build(tmp_path_factory, name, build, timeout_s=900):
    """`build(path)` once per session, also across xdist workers (they share the base temp's parent)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path, lock, done = root / name, root / f"{name}.lock", root / f"{name}.done"
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
    except FileExistsError:  # another worker builds it: wait
        deadline = time.time() + timeout_s
        while not done.exists():
            if time.time() > deadline:
                pytest.fail(f"waited {timeout_s} s for another worker to build {path}")
            time.sleep(1.0)
        if done.read_text() != "ok":
            pytest.fail(f"another worker failed to build {path}: {done.read_text()}")
        return str(path)
    outcome = "failed"
    try:
        build(str(path))
        outcome = "ok"
    except BaseException as error:
        outcome = f"failed: {type(error).__name__}: {error}"
        raise
    finally:
        done.write_text(outcome)
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from t2t_jax.train.loop import train_and_evaluate

    return shared_build(tmp_path_factory, "attention_reverse", lambda path: train_and_evaluate(alignment_config(),
                                                                                               path))


def anti_diagonal_fractions(translator, sequences):
    """[layers, heads] fraction of target positions t (EOS row excluded) whose encoder-decoder attention peaks
    at source position n-1-t, over EOS-terminated (source, reversed source) pairs; the argmax runs over all
    source positions, EOS included."""
    hits = total = 0
    for digits in sequences:
        n = len(digits)
        source = " ".join(map(str, digits))
        maps = translator.attention(source, " ".join(map(str, digits[::-1])))
        assert maps.source_tokens[-1] == "</s>" and maps.target_tokens[-1] == "</s>"
        assert maps.cross.shape[2:] == (n + 1, n + 1)  # [layers, heads, T, S], both with EOS
        peaks = maps.cross[:, :, :n].argmax(-1)  # [layers, heads, n]
        hits = hits + (peaks == n - 1 - np.arange(n)).sum(-1)
        total += n
    return hits / total


def test_encoder_decoder_attention_learns_the_anti_diagonal(workdir, translator):
    accuracy = [row["accuracy"] for row in workdir_metrics(workdir) if row["kind"] == "eval"][-1]
    assert accuracy >= 0.97, f"the model did not learn to reverse (eval accuracy {accuracy}): nothing to align"
    rng = np.random.default_rng(7)
    sequences = [rng.integers(0, 10, n).tolist() for n in range(3, MAX_DIGITS + 1) for _ in range(3)]
    fractions = anti_diagonal_fractions(translator, sequences)
    layer, head = np.unravel_index(fractions.argmax(), fractions.shape)
    print(f"anti-diagonal fraction per [layer, head]:\n{fractions.round(3)}\nbest: layer {layer} head {head}")
    assert fractions.max() >= 0.9, fractions


def test_translator_attention_defaults_to_the_models_own_translation(translator):
    source = "3 1 4 1 5 9 2"
    maps = translator.attention(source)
    translation = translator.translate([source])[0]
    assert maps.target_tokens == translator.tokenizer.pieces(translator.tokenizer.encode(translation)) + ["</s>"]
    assert maps.source_tokens == ["\u25813", "\u25811", "\u25814", "\u25811", "\u25815", "\u25819", "\u25812", "</s>"]
    layers, heads = 2, 2
    s, t = len(maps.source_tokens), len(maps.target_tokens)
    assert maps.encoder.shape == (layers, heads, s, s) and maps.decoder.shape == (layers, heads, t, t)
    assert maps.cross.shape == (layers, heads, t, s)
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(maps.weights(kind).sum(-1), 1.0, atol=1e-5, err_msg=kind)
    assert (maps.decoder[..., np.triu(np.ones((t, t), bool), k=1)] == 0).all()
    merged = translator.attention(source, merge_words=True)  # one piece per word here: the same weights
    assert merged.source_tokens[:3] == ["3", "1", "4"] and merged.source_tokens[-1] == "</s>"
    np.testing.assert_allclose(merged.cross, maps.cross, atol=1e-6)


def test_cli_writes_a_png_and_an_html_page(workdir, tmp_path):
    png, page = str(tmp_path / "cross.png"), str(tmp_path / "attention.html")
    result = run_cli("attention", "--workdir", workdir, "--source", "1 2 3 4 5", "--output", png)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "wrote cross attention" in result.stdout.decode()
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    result = run_cli("attention", "--workdir", workdir, "--source", "1 2 3", "--target", "3 2 1", "--kind",
                     "decoder", "--layer", "1", "--head", "0", "--merge_words", "--output", page)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert '"initial":{"kind":"decoder","layer":1,"head":0}' in text and '"target_tokens":["3","2","1"' in text


@pytest.mark.parametrize("args, words", [
    (["--source", "  ", "--output", "a.png"], ["--source is empty"]),
    (["--source", "1 2", "--output", "a.jpg"], ["a.jpg", ".png or .html"]),
    (["--source", "1 2", "--output", "a.png", "--kind", "self"], ["'self'"]),
    (["--source", "1 2", "--output", "a.png", "--layer", "7"], ["--layer 7", "0 to 1"]),
])
def test_cli_bad_input_gives_one_error_line(workdir, tmp_path, args, words):
    args = [str(tmp_path / arg) if arg.startswith("a.") else arg for arg in args]
    assert_clear_error(run_cli("attention", "--workdir", workdir, *args), *words)


def test_cli_with_an_empty_workdir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("attention", "--workdir", str(empty), "--source", "1 2", "--output", str(tmp_path / "a.png"))
    assert_clear_error(result, "empty", "no trained model")
