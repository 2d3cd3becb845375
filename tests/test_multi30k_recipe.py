"""configs/multi30k.py runs in other directions by changing only the data flags (real Multi30k text)."""

import json
import os

import pytest
from train_helpers import ROOT, run_cli

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "multi30k")


@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data/multi30k is absent (a user's clone)")
@pytest.mark.parametrize("source,target", [("en", "fr")])  # de-en takes the same path: one direction is enough
def test_other_directions_change_only_the_data_flags(source, target, tmp_path):
    workdir = tmp_path / f"{source}-{target}"
    flags = [
        f"--config.data.train=text:{DATA}/train.{source},{DATA}/train.{target}",
        f"--config.data.eval=text:{DATA}/valid.{source},{DATA}/valid.{target}",
        f"--config.data.source_lang={source}", f"--config.data.target_lang={target}",
    ]
    short = ["--config.train.steps=2", "--config.train.eval_examples=16", "--config.train.eval_bleu=false",
             "--config.train.average_last=0", "--config.data.vocab_size=2000", "--config.data.vocab_sample_lines=5000"]
    result = run_cli("train", "--config", "configs/multi30k.py", "--workdir", str(workdir), *flags, *short)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    with open(workdir / "config.json") as f:
        saved = json.load(f)["data"]
    assert (saved["source_lang"], saved["target_lang"]) == (source, target)
    assert saved["train"].endswith(f"train.{source},{DATA}/train.{target}")
    decoded = run_cli("decode", "--workdir", str(workdir), stdin=b"ein Satz\n" if source == "de" else b"a dog\n")
    assert decoded.returncode == 0 and len(decoded.stdout.decode().splitlines()) == 1
