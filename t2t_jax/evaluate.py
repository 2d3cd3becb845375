"""Scores: sacreBLEU (detokenized output against the raw reference, with its signature) and chrF, plus the
paper-comparable tokenized BLEU of T2T's get_ende_bleu.sh (Moses tokenization and ##AT##-##AT## compound
splitting, then BLEU on the tokens). Only the sacreBLEU figure is comparable across papers and tools; the
tokenized one is labelled as such wherever it is printed.
"""

from __future__ import annotations

import dataclasses
import re

import sacrebleu
from sacremoses import MosesTokenizer

_COMPOUND = re.compile(r"(\S)-(\S)")


@dataclasses.dataclass(frozen=True)
class Scores:
    bleu: float
    bleu_signature: str
    chrf: float
    chrf_signature: str
    tokenized_bleu: float

    def lines(self) -> list[str]:
        return [
            f"sacreBLEU {self.bleu:.2f}  ({self.bleu_signature})",
            f"chrF2 {self.chrf:.2f}  ({self.chrf_signature})",
            f"tokenized BLEU {self.tokenized_bleu:.2f}  (paper-style: Moses tokens + compound splitting, "
            "as T2T's get_ende_bleu.sh; not comparable to sacreBLEU)",
        ]


def paper_tokenize(lines: list[str], lang: str) -> list[str]:
    """Moses tokenization (tokenizer.perl -l LANG) and compound splitting, as in T2T's get_ende_bleu.sh."""
    tokenizer = MosesTokenizer(lang=lang)
    tokenized = [tokenizer.tokenize(line, return_str=True, escape=True) for line in lines]
    return [_COMPOUND.sub(r"\1 ##AT##-##AT## \2", line) for line in tokenized]  # one pass, like perl s{}{}g


def tokenized_bleu(hypotheses: list[str], references: list[str], lang: str) -> float:
    """multi-bleu.perl style BLEU on paper-tokenized text (case-sensitive, no further tokenization)."""
    hyp, ref = paper_tokenize(hypotheses, lang), paper_tokenize(references, lang)
    return sacrebleu.corpus_bleu(hyp, [ref], tokenize="none", force=True).score


def score(hypotheses: list[str], references: list[str], target_lang: str) -> Scores:
    """sacreBLEU (13a tokenization) with signature, chrF2, and the paper-style tokenized BLEU."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return Scores(
        bleu=bleu_score.score, bleu_signature=str(bleu.get_signature()),
        chrf=chrf_score.score, chrf_signature=str(chrf.get_signature()),
        tokenized_bleu=tokenized_bleu(hypotheses, references, target_lang),
    )
