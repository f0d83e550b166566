"""TOFU's log-probability metrics (tier L), from per-answer numbers only.

Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs" (arXiv:2401.06121).
Each scored answer is a ``(summed log-prob of its tokens, token count)`` pair, so any engine
that scores a given continuation can feed these. Definitions follow TOFU's evaluation code:

- probability: ``P(a|q)^(1/|a|)``; with options (real authors, world facts) it is normalised
  over the gold answer and its perturbed alternatives.
- truth ratio ``R = geometric mean_j P(ã_j|q)^(1/|ã_j|) / P(â|q)^(1/|â|)`` (ã perturbed, â the
  paraphrased answer, or the gold answer where no paraphrase exists); reported as
  ``max(0, 1 - R)`` on retain/utility sets and ``min(R, 1/R)`` on the forget set.
- model utility: harmonic mean of {probability, ROUGE-L recall, truth ratio} x {retain,
  real authors, world facts} (nine values).
- forget quality: p-value of a two-sample KS test between the ``R`` values of the unlearned
  model and of a model trained on the retain split only, on the forget set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy.stats import ks_2samp

from benchmarks.errors import MetricError
from benchmarks.metrics.base import MetricResult, check_lengths

__all__ = ["ScoredAnswer", "forget_quality", "model_utility", "tofu_probability",
           "truth_ratio", "truth_ratios"]

ScoredAnswer = tuple[float, int]


def _per_token(scored: ScoredAnswer) -> float:
    logprob, n_tokens = scored
    if n_tokens < 1 or logprob > 1e-6 or math.isnan(logprob):
        raise MetricError(f"scored answer {scored!r}: need a log-prob <= 0 and >= 1 token")
    return logprob / n_tokens


def tofu_probability(answers: Sequence[ScoredAnswer], *,
                     perturbed: Sequence[Sequence[ScoredAnswer]] | None = None) -> MetricResult:
    """Mean length-normalised probability of ``answers``; normalised over the options when
    ``perturbed`` alternatives are given."""
    if perturbed is not None:
        check_lengths("tofu_probability", answers=answers, perturbed=perturbed)
    elif not answers:
        raise MetricError("tofu_probability: no answers")
    scores = []
    for index, answer in enumerate(answers):
        prob = math.exp(_per_token(answer))
        if perturbed is not None:
            prob /= prob + math.fsum(math.exp(_per_token(p)) for p in perturbed[index])
        scores.append(prob)
    return MetricResult(value=math.fsum(scores) / len(scores), per_item=scores, tier="L",
                        higher_is_better=True, name="tofu_probability")


def truth_ratios(paraphrased: Sequence[ScoredAnswer],
                 perturbed: Sequence[Sequence[ScoredAnswer]]) -> list[float]:
    """Raw per-item ``R`` (see the module docstring); the input of ``forget_quality``."""
    check_lengths("truth_ratios", paraphrased=paraphrased, perturbed=perturbed)
    ratios = []
    for para, alternatives in zip(paraphrased, perturbed, strict=True):
        if not alternatives:
            raise MetricError("truth_ratios: an item has no perturbed answers")
        mean_perturbed = math.fsum(_per_token(p) for p in alternatives) / len(alternatives)
        ratios.append(math.exp(mean_perturbed - _per_token(para)))
    return ratios


def truth_ratio(paraphrased: Sequence[ScoredAnswer], perturbed: Sequence[Sequence[ScoredAnswer]],
                *, forget: bool = False) -> MetricResult:
    """TOFU's reported truth ratio: ``min(R, 1/R)`` if ``forget`` else ``max(0, 1 - R)``."""
    ratios = truth_ratios(paraphrased, perturbed)
    if forget:
        scores = [min(r, 1.0 / r) if r > 0 else 0.0 for r in ratios]
    else:
        scores = [max(0.0, 1.0 - r) for r in ratios]
    return MetricResult(value=math.fsum(scores) / len(scores), per_item=scores, tier="L",
                        higher_is_better=True, name="truth_ratio")


def model_utility(values: Mapping[str, float] | Sequence[float]) -> MetricResult:
    """Harmonic mean of the component ``values`` (TOFU: nine, best passed by name), each in
    [0, 1]; any zero gives zero."""
    items = [float(v) for v in (values.values() if isinstance(values, Mapping) else values)]
    if not items:
        raise MetricError("model_utility: no values")
    if not all(0.0 <= v <= 1.0 for v in items):
        raise MetricError(f"model_utility: values must lie in [0, 1], got {values!r}")
    value = 0.0 if min(items) == 0.0 else len(items) / math.fsum(1.0 / v for v in items)
    return MetricResult(value=value, per_item=items, tier="L", higher_is_better=True,
                        name="model_utility")


def forget_quality(unlearned_ratios: Sequence[float],
                   retain_ratios: Sequence[float]) -> MetricResult:
    """KS-test p-value between forget-set truth ratios (``truth_ratios``) of the unlearned model
    and of the retain-only model; high means indistinguishable. ``per_item`` is empty."""
    if not unlearned_ratios or not retain_ratios:
        raise MetricError("forget_quality: both ratio lists must be non-empty")
    result = ks_2samp(list(unlearned_ratios), list(retain_ratios))
    return MetricResult(value=float(result.pvalue), per_item=[], tier="L",
                        higher_is_better=True, name="forget_quality")
