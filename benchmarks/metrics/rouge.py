"""ROUGE-L recall against gold answers (tier T).

Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries". TOFU (Maini et al. 2024)
and RWKU (Jin et al. 2024) score generated answers by ROUGE-L *recall*: the longest common
subsequence with the reference divided by the reference length. Computed with Google's
``rouge_score`` (lower-cased, non-alphanumeric characters dropped, Porter stemming as in
TOFU's evaluation); RWKU's own numbers use the ``rouge`` package and are x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer

from benchmarks.metrics.base import MetricResult, check_lengths

__all__ = ["rouge_l_recall"]


@lru_cache(maxsize=2)
def _scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str], *,
                   use_stemmer: bool = True) -> MetricResult:
    """Mean ROUGE-L recall of ``predictions`` against ``references``, in [0, 1].

    Higher means more of the gold answer was produced (on forget probes, lower is better).
    Raises ``MetricError`` if the lists differ in length or are empty.
    """
    check_lengths("rouge_l_recall", predictions=predictions, references=references)
    scorer = _scorer(use_stemmer)
    scores = [float(scorer.score(reference, prediction)["rougeL"].recall)
              for prediction, reference in zip(predictions, references, strict=True)]
    return MetricResult(value=sum(scores) / len(scores), per_item=scores, tier="T",
                        higher_is_better=True, name="rouge_l_recall")
