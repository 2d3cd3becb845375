"""Scores: sacreBLEU on raw text, chrF, and the paper-style tokenized BLEU of T2T's get_ende_bleu.sh."""

import math
import os
import shutil
import subprocess
import sys

import pytest
from train_helpers import ROOT

from t2t_jax.evaluate import paper_tokenize, score, tokenized_bleu

WMT14 = os.path.join(os.path.dirname(ROOT), "shared", "data", "wmt14")


def test_tokenized_bleu_by_hand():
    # paper tokens: Das Gas ##AT##-##AT## Wasser ##AT##-##AT## Gemisch ist heute sehr gut .   (11 tokens)
    reference = "Das Gas-Wasser-Gemisch ist heute sehr gut."
    assert paper_tokenize([reference], "de")[0].split()[1:6] == ["Gas", "##AT##-##AT##", "Wasser", "##AT##-##AT##",
                                                                 "Gemisch"]
    hypothesis = "Das Gas-Wasser-Gemisch ist morgen sehr gut."  # token 8 of 11 differs
    expected = 100 * (10 / 11 * 8 / 10 * 6 / 9 * 4 / 8) ** 0.25  # n-gram precisions, brevity penalty 1
    assert tokenized_bleu([hypothesis], [reference], "de") == pytest.approx(expected, abs=1e-6)
    assert tokenized_bleu([reference], [reference], "de") == pytest.approx(100.0)


def test_sacrebleu_scores_detokenized_text_against_the_raw_reference():
    scores = score(["The cat sat on the mat."], ["The cat sat on the mat."], "en")
    assert scores.bleu == pytest.approx(100.0) and scores.chrf == pytest.approx(100.0)
    assert "tok:13a" in scores.bleu_signature and "nrefs:1" in scores.bleu_signature
    assert any("not comparable to sacreBLEU" in line for line in scores.lines())


def lines(path, count):
    with open(path, encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(count)]


@pytest.mark.skipif(not os.path.isdir(WMT14), reason="../shared/data/wmt14 is absent (a user's clone)")
def test_newstest2014_matches_the_official_command_line_tools(tmp_path):
    """A known hypothesis (every reference line with its 3rd word dropped) scored by us and by the reference
    pipeline: the sacrebleu command line on raw text, and get_ende_bleu.sh's steps (Moses tokenizer via the
    sacremoses command line, perl compound splitting, BLEU on tokens) run as separate programs."""
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")
    references = lines(os.path.join(WMT14, "newstest2014.de"), 3003)
    hypotheses = [" ".join(w for i, w in enumerate(line.split()) if i != 2) for line in references]
    (tmp_path / "ref").write_text("\n".join(references) + "\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    ours = score(hypotheses, references, "de")

    bin_dir = os.path.dirname(sys.executable)
    official = subprocess.run([os.path.join(bin_dir, "sacrebleu"), str(tmp_path / "ref"), "-i", str(tmp_path / "hyp"),
                               "-b", "-w", "6"], capture_output=True, text=True, check=True)
    assert ours.bleu == pytest.approx(float(official.stdout), abs=1e-4)

    def get_ende_tokenize(name):
        moses = subprocess.run(f"{bin_dir}/sacremoses -l de -j 1 tokenize < {tmp_path / name} | "
                               r"perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g' > " f"{tmp_path / name}.tok",
                               shell=True, capture_output=True, text=True)
        assert moses.returncode == 0, moses.stderr

    get_ende_tokenize("ref")
    get_ende_tokenize("hyp")
    tokenized = subprocess.run([os.path.join(bin_dir, "sacrebleu"), str(tmp_path / "ref.tok"), "-i",
                                str(tmp_path / "hyp.tok"), "-tok", "none", "-b", "-w", "6"],
                               capture_output=True, text=True, check=True)
    assert ours.tokenized_bleu == pytest.approx(float(tokenized.stdout), abs=1e-4)
    assert 40 < ours.bleu < 90 and math.isfinite(ours.chrf)
