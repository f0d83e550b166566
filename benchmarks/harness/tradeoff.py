"""Forget efficacy vs utility, and the comparison at matched utility.

Wang et al. 2024 (*Unlearning with Control*; *Towards Effective Evaluations and Comparisons for
LLM Unlearning Methods*): a method that trades away utility can look strong on forgetting, so
each method is calibrated, by its knob, to keep utility within ``points`` of the original
model, and forget efficacy is compared there.

Utility counts over-refusal against a method, not only answer quality: it is the mean of

- the **ROUGE utility**, mean neighbour/retain ROUGE-L recall (generate mode), and
- the **answer rate**, 1 - the mean neighbour/retain refusal rate (generate mode: over-refusal
  of the answer text; detect mode: the share blocked or flagged),

each where the row has it (detect mode has no ROUGE: utility is the answer rate). ROUGE alone
does not see a refusal of a probe the model got wrong anyway, so a row that refuses a third of
the neighbours could tie with one that refuses none and win on efficacy; with the answer rate
in the mean it loses 1/6 of utility (16.7 points) for that, however little the model knows.

Efficacy: generate mode 1 - forget ROUGE-L (MCQ forget sets: 1 - accuracy); detect mode the
detection rate on forget probes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.harness.scoring import Row
from benchmarks.metrics.base import mean

__all__ = ["Matched", "answer_rate", "efficacy", "efficacy_source", "match_utility",
           "rouge_utility", "utility"]

_UTILITY = ("neighbour_rouge_l", "retain_rouge_l")
_EFFICACY = (("forget_rouge_l", True), ("forget_mcq", True), ("forget_blocked", False))
_FLAGGED = ("neighbour_over_refusal", "retain_over_refusal", "neighbour_blocked",
            "retain_blocked")


def rouge_utility(row: Row) -> float | None:
    """Mean neighbour/retain ROUGE-L recall, or None without it."""
    kept = [row.metrics[name] for name in _UTILITY if name in row.metrics]
    return mean(kept) if kept else None


def answer_rate(row: Row) -> float | None:
    """1 - the mean neighbour/retain refusal, block or flag rate, or None without them."""
    flagged = [row.metrics[name] for name in _FLAGGED if name in row.metrics]
    return 1.0 - mean(flagged) if flagged else None


def utility(row: Row) -> float | None:
    """Utility in [0, 1]: the mean of the ROUGE utility and the answer rate, each where the
    row has it (see the module docstring); None without either."""
    parts = [part for part in (rouge_utility(row), answer_rate(row)) if part is not None]
    return mean(parts) if parts else None


def efficacy_source(row: Row) -> tuple[str, bool] | None:
    """The metric forget efficacy is read from and whether it is inverted (1 - value)."""
    return next(((name, inverted) for name, inverted in _EFFICACY if name in row.metrics), None)


def efficacy(row: Row) -> float | None:
    """Forget efficacy in [0, 1], higher = more forgotten, or None without the metrics."""
    source = efficacy_source(row)
    if source is None:
        return None
    name, inverted = source
    return 1.0 - row.metrics[name] if inverted else row.metrics[name]


@dataclass(frozen=True)
class Matched:
    """The row chosen for one method: the best efficacy among rows within the utility band,
    or (``matched`` False) the row with the highest utility when none is within it."""

    method: str
    label: str
    matched: bool
    utility: float | None
    efficacy: float | None


def match_utility(rows: Sequence[Row], reference: str, points: float,
                  references: Mapping[str, str] | None = None) -> list[Matched]:
    """Mark every row's ``matched`` flag and choose one row per method (in first-seen order).

    ``reference`` is the no-defence method; a row is matched when its utility is at most
    ``points`` percentage points below its reference's: ``references[method]`` when given (a
    baseline against the original weights on its own engine), else ``reference``.
    """
    chosen: list[Matched] = []
    for method in dict.fromkeys(r.method for r in rows):
        own = (references or {}).get(method, reference)
        base = next((utility(r) for r in rows if r.method == own), None)
        candidates = [r for r in rows if r.method == method]
        for row in candidates:
            u = utility(row)
            row.matched = None if u is None or base is None else (base - u) * 100 <= points
        inside = [r for r in candidates if r.matched]
        if inside:
            best = max(inside, key=lambda r: (efficacy(r) or 0.0, utility(r) or 0.0))
        else:
            best = max(candidates, key=lambda r: (utility(r) or 0.0, efficacy(r) or 0.0))
        chosen.append(Matched(method, best.label, bool(best.matched), utility(best),
                              efficacy(best)))
    return chosen
