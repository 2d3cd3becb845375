"""The t2t-jax command, run as a user runs it: in a subprocess, with bad input too."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, assert_clear_error, config_flags, run_cli, train_losses

SMALL = config_flags(model=TINY_MODEL, data=dict(TINY_DATA, batch_tokens=256, algorithmic_eval_examples=16),
                     train=dict(log_every=1))


@pytest.fixture(scope="module")
def trained(train_workdir):
    return train_workdir("cli", "--config", "configs/reverse.py", "--config.train.steps=4", *SMALL)


def test_decode_keeps_one_output_line_per_input_line_in_order(trained, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("3 1 4\n\n1 2 3 4 5 6 7\n   \n5\n")
    result = run_cli("decode", "--workdir", trained, "--input", str(source))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = result.stdout.decode().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 5, lines
    assert lines[1] == "" and lines[3] == ""
    # stdin/stdout and --output give the same translations; n-best lists have n lines per input
    piped = run_cli("decode", "--workdir", trained, stdin=source.read_bytes())
    assert piped.stdout == result.stdout
    nbest = run_cli("decode", "--workdir", trained, "--input", str(source), "--nbest", "2", "--beam_size", "2")
    rows = nbest.stdout.decode().splitlines()
    assert len(rows) == 10 and rows[0].startswith("0 ||| ") and rows[9].startswith("4 ||| "), rows


def test_eval_prints_sacrebleu_with_signature_and_chrf(trained, tmp_path):
    (tmp_path / "src").write_text("1 2 3\n4 5 6\n")
    (tmp_path / "ref").write_text("3 2 1\n6 5 4\n")
    source, reference = str(tmp_path / "src"), str(tmp_path / "ref")
    result = run_cli("eval", "--workdir", trained, "--source", source, "--reference", reference)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "sacreBLEU" in out and "nrefs:1|case:mixed" in out and "chrF2" in out and "tokenized BLEU" in out


def test_a_relative_workdir_trains_checkpoints_and_decodes(tmp_path):
    config = os.path.join(ROOT, "configs", "reverse.py")
    result = run_cli("train", "--config", config, "--workdir", "runs/rel", *SMALL, "--config.train.steps=2",
                     cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert os.listdir(tmp_path / "runs" / "rel" / "checkpoints") == ["2"]
    decoded = run_cli("decode", "--workdir", "runs/rel", stdin=b"1 2 3\n", cwd=str(tmp_path))
    assert decoded.returncode == 0 and len(decoded.stdout.decode().splitlines()) == 1


@pytest.mark.parametrize("options,words", [
    (["--beam_size", "0"], ["--beam_size", "at least 1", "0"]),
    (["--nbest", "3", "--beam_size", "2"], ["--nbest", "beam size 2", "3"]),
])
def test_bad_decode_options(trained, options, words):
    assert_clear_error(run_cli("decode", "--workdir", trained, *options, stdin=b"1 2\n"), *words)


def test_average_command(trained):
    for last in ("2", "1"):  # averaging again replaces the average
        result = run_cli("average", "--workdir", trained, "--last", last)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert os.path.isdir(os.path.join(trained, "averaged"))
    decoded = run_cli("decode", "--workdir", trained, "--checkpoint", "averaged", stdin=b"1 2\n")
    assert decoded.returncode == 0 and len(decoded.stdout.decode().splitlines()) == 1


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.de").write_text("ein Hund\nzwei Katzen\ndrei\n")
    (tmp_path / "a.en").write_text("a dog\ntwo cats\n")
    (tmp_path / "u.de").write_bytes(b"gut\n\xff\xfe kaputt\n")
    (tmp_path / "u.en").write_text("good\nbroken\n")
    return tmp_path


def train_text(files, source, target):
    data = f"text:{files / source},{files / target}"
    return run_cli("train", "--config", "configs/tiny.py", "--workdir", str(files / "w"),
                   f"--config.data.train={data}", f"--config.data.eval={data}", timeout=120)


def test_mismatched_files(files):
    assert_clear_error(train_text(files, "a.de", "a.en"), "a.de", "a.en", "3", "2")


def test_missing_file(files):
    assert_clear_error(train_text(files, "nope.de", "nope.en"), "nope.de")


def test_bad_utf8(files):
    assert_clear_error(train_text(files, "u.de", "u.en"), "u.de", "line 2")


def test_unknown_config_key(tmp_path):
    result = run_cli("train", "--config", "configs/reverse.py", "--workdir", str(tmp_path), "--config.no_such_key=1")
    assert_clear_error(result, "no_such_key")


def test_unknown_uri_scheme(tmp_path):
    result = run_cli("train", "--config", "configs/reverse.py", "--workdir", str(tmp_path), "--config.data.train=ftp://x")
    assert_clear_error(result, "ftp://x")


def test_wrongly_typed_override(tmp_path):
    result = run_cli("train", "--config", "configs/reverse.py", "--workdir", str(tmp_path), "--config.train.steps=many")
    assert_clear_error(result, "train.steps", "int")


def test_decode_with_an_empty_workdir(tmp_path):
    assert_clear_error(run_cli("decode", "--workdir", str(tmp_path / "none"), stdin=b"1 2\n"), "none")


def test_decode_bad_utf8_input(trained, files):
    assert_clear_error(run_cli("decode", "--workdir", trained, "--input", str(files / "u.de")), "u.de", "line 2")


def test_changing_the_model_of_a_trained_workdir_is_refused(trained):
    changed = [*SMALL, "--config.model.d_model=64"]
    result = run_cli("train", "--config", "configs/reverse.py", "--workdir", trained, *changed)
    assert_clear_error(result, "model.d_model")


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    workdir = str(tmp_path / "w")
    args = ["train", "--config", "configs/reverse.py", "--workdir", workdir, *SMALL,
            "--config.train.steps=100000", "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000"]
    process = subprocess.Popen([sys.executable, "-m", "t2t_jax", *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        time.sleep(0.5)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]
    assert b"stopped at step" in out, out.decode()[-2000:]
    saved = [int(name) for name in os.listdir(os.path.join(workdir, "checkpoints"))]
    assert len(saved) == 1 and saved[0] >= 1
    stopped_at = saved[0]
    resumed = run_cli(*args[:-3], f"--config.train.steps={stopped_at + 2}")
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert f"resumed from step {stopped_at}" in resumed.stdout.decode()
    assert max(train_losses(workdir)) == stopped_at + 2
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["steps"] == stopped_at + 2


def test_decode_takes_overrides_of_the_decode_settings_only(trained, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("3 1 4\n1 2 3 4 5 6 7\n5\n")
    plain = run_cli("decode", "--workdir", trained, "--input", str(source))
    small = run_cli("decode", "--workdir", trained, "--input", str(source), "--config.decode.batch_tokens=16",
                    "--config.decode.max_extra_length=3")
    assert small.returncode == 0, small.stderr.decode()[-2000:]
    assert len(small.stdout.decode().splitlines()) == 3
    assert all(len(out.split()) <= len(src.split()) + 3 for src, out in
               zip(source.read_text().splitlines(), small.stdout.decode().splitlines()))
    assert plain.returncode == 0
    assert_clear_error(run_cli("decode", "--workdir", trained, "--config.model.d_model=64", stdin=b"1\n"),
                       "--config.model.d_model", "decode.*")
    assert_clear_error(run_cli("decode", "--workdir", trained, "--config.decode.beem_size=2", stdin=b"1\n"),
                       "beem_size")
    assert_clear_error(run_cli("average", "--workdir", trained, "--last", "1", "--config.decode.beam_size=2"),
                       "not to average")


def test_a_misspelt_setting_in_a_config_file_is_one_clear_error(tmp_path):
    config = tmp_path / "typo.py"
    config.write_text("from t2t_jax.configuration import default_config\n\n\ndef get_config():\n"
                      "    config = default_config()\n    config.train.stpes = 5\n    return config\n")
    result = run_cli("train", "--config", str(config), "--workdir", str(tmp_path / "w"))
    assert_clear_error(result, "stpes", "train.steps")
    assert not (tmp_path / "w").exists()
