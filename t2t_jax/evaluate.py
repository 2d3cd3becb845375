"""Scores: sacreBLEU (detokenized output against the raw reference, with its signature) and chrF, plus the
paper-comparable tokenized BLEU of T2T's get_ende_bleu.sh (Moses tokenization and ##AT##-##AT## compound
splitting, then BLEU on the tokens). Only the sacreBLEU figure is comparable across papers and tools; the
tokenized one is labelled as such wherever it is printed.

Summaries (decode.metric = 'rouge') get ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures from Google's
rouge-score package (Porter stemmer, as its README's examples and most CNN/DailyMail papers use), the corpus figure
being the mean over examples. ROUGE-Lsum is the summary-level LCS over sentences: rouge-score takes sentences as
newline-separated; one-line texts are split after '.', '!' or '?' followed by a space (nltk's sentence splitter,
rouge-score's split_summaries, needs a data download this package does not assume).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import sacrebleu
from sacremoses import MosesTokenizer

from t2t_jax.settings import DecodeSettings

_COMPOUND = re.compile(r"(\S)-(\S)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


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


@dataclasses.dataclass(frozen=True)
class RougeScores:
    """ROUGE F-measures x 100, each the mean over `examples` (hypothesis, reference) pairs."""

    rouge1: float
    rouge2: float
    rougeL: float  # rouge-score's names
    rougeLsum: float
    examples: int

    def lines(self) -> list[str]:
        how = f"F-measure, mean of {self.examples} examples; rouge-score, Porter stemmer"
        return [
            f"ROUGE-1 {self.rouge1:.2f}  ({how})",
            f"ROUGE-2 {self.rouge2:.2f}  ({how})",
            f"ROUGE-L {self.rougeL:.2f}  ({how})",
            f"ROUGE-Lsum {self.rougeLsum:.2f}  ({how}; summary-level LCS over sentences)",
        ]


def summary_sentences(text: str) -> str:
    """`text` with one sentence a line, as rouge-score's ROUGE-Lsum reads it: existing line breaks are kept, and
    a line is also broken after '.', '!' or '?' followed by whitespace."""
    return "\n".join(sentence for line in text.splitlines() for sentence in _SENTENCE_END.split(line.strip())
                     if sentence)


def rouge(hypotheses: list[str], references: list[str]) -> RougeScores:
    """ROUGE-1/2/L/Lsum F-measures (rouge-score with the Porter stemmer), means over the examples, x 100."""
    from rouge_score import rouge_scorer  # imports nltk: only when ROUGE is asked for

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        scores = scorer.score(summary_sentences(reference), summary_sentences(hypothesis))  # (target, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    count = len(hypotheses)
    means = {name: 100.0 * total / count if count else 0.0 for name, total in totals.items()}
    return RougeScores(**means, examples=count)


def report(hypotheses: list[str], references: list[str], config: Any) -> list[str]:
    """The lines `t2t-jax eval` prints: ROUGE when the config's decode.metric is 'rouge', else sacreBLEU, chrF and
    tokenized BLEU (in the config's data.target_lang)."""
    if DecodeSettings.from_config(config.decode).metric == "rouge":
        return rouge(hypotheses, references).lines()
    return score(hypotheses, references, config.data.target_lang).lines()
