"""Outcomes -> metric rows, each metric labelled with its tier (T/L/W) and direction.

The metric functions (``benchmarks.metrics``) report "knowledge kept" (higher ROUGE/ES/MCQ =
more known); :data:`METRIC_INFO` states for each row metric whether lower or higher is better
for an unlearning method, so forget-set knowledge is read the right way round, and whether it
is a *rate* (a share of probes, each 0 or 1), which the report gives with its Wilson 95 %
interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks.datasets import Probe, ProbeKind
from benchmarks.metrics.base import MetricResult, Tier, mean
from benchmarks.metrics.interval import proportion_interval
from benchmarks.metrics.mcq import mcq_accuracy
from benchmarks.metrics.refusal import over_refusal_rate, refusal_rate
from benchmarks.metrics.rouge import rouge_l_recall
from benchmarks.harness.policies import KINDS
from benchmarks.harness.runner import Outcome
from benchmarks.harness.tasks import is_asked_as_mcq

__all__ = ["METRIC_INFO", "MetricInfo", "Row", "cost_metrics", "known_probes", "score_outcomes"]

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class MetricInfo:
    """How a row metric is labelled: title, tier, direction, unit, and whether it is a rate."""

    title: str
    tier: Tier
    better: Better
    unit: Literal["%", "ms", "tokens"] = "%"
    rate: bool = False


METRIC_INFO: dict[str, MetricInfo] = {
    "forget_rouge_l": MetricInfo("Forget ROUGE-L", "T", "lower"),
    "forget_refusal": MetricInfo("Forget refusal", "T", "higher", rate=True),
    "forget_es": MetricInfo("Forget ES", "T", "lower"),
    "forget_mcq": MetricInfo("Forget MCQ accuracy", "T", "lower", rate=True),
    "neighbour_rouge_l": MetricInfo("Neighbour ROUGE-L", "T", "higher"),
    "neighbour_over_refusal": MetricInfo("Neighbour over-refusal", "T", "lower", rate=True),
    "retain_rouge_l": MetricInfo("Retain ROUGE-L", "T", "higher"),
    "retain_over_refusal": MetricInfo("Retain over-refusal", "T", "lower", rate=True),
    "utility_mcq": MetricInfo("Utility MCQ accuracy", "T", "higher", rate=True),
    "forget_blocked": MetricInfo("Forget detected", "T", "higher", rate=True),
    "neighbour_blocked": MetricInfo("Neighbour flagged", "T", "lower", rate=True),
    "retain_blocked": MetricInfo("Retain flagged", "T", "lower", rate=True),
    "forget_probability": MetricInfo("Forget probability", "L", "lower"),
    "forget_truth_ratio": MetricInfo("Forget truth ratio", "L", "higher"),
    "retain_probability": MetricInfo("Retain probability", "L", "higher"),
    "retain_truth_ratio": MetricInfo("Retain truth ratio", "L", "higher"),
    "model_utility": MetricInfo("Model utility", "L", "higher"),
    "blocked_share": MetricInfo("Blocked requests", "T", "lower", rate=True),
    "added_ms": MetricInfo("Added latency", "T", "lower", "ms"),
    "prompt_tokens": MetricInfo("Prompt tokens/request", "T", "lower", "tokens"),
    "added_prompt_tokens": MetricInfo("Added prompt tokens", "T", "lower", "tokens"),
}


@dataclass
class Row:
    """One variant on one dataset (``group``: on one group of its probes, e.g. a level):
    metric values, their sample sizes and per-item scores."""

    dataset: str
    method: str
    label: str
    knob: str | None
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    matched: bool | None = None
    training: dict[str, Any] | None = None
    group: str | None = None

    def add(self, name: str, result: MetricResult) -> None:
        """Record ``result`` under the row metric ``name`` (must be in METRIC_INFO)."""
        if name not in METRIC_INFO:
            raise KeyError(f"unknown row metric {name!r}")
        self.metrics[name] = result.value
        self.n[name] = len(result.per_item)
        self.items[name] = list(result.per_item)

    def interval(self, name: str) -> tuple[float, float] | None:
        """The Wilson 95 % interval of a rate metric, or None (not a rate, or not recorded)."""
        if name not in self.metrics or not METRIC_INFO[name].rate:
            return None
        return proportion_interval(self.items.get(name, ()))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict with each metric's tier, direction and (rates) 95 % interval."""
        metrics = {name: {"value": value, "n": self.n.get(name), "tier": METRIC_INFO[name].tier,
                          "better": METRIC_INFO[name].better, "unit": METRIC_INFO[name].unit,
                          "ci95": self.interval(name)}
                   for name, value in self.metrics.items()}
        out: dict[str, object] = {
            "dataset": self.dataset, "method": self.method, "label": self.label,
            "knob": self.knob, "value": self.value, "matched_utility": self.matched,
            "wall_s": round(self.wall_s, 3), "training": self.training, "metrics": metrics}
        return out | ({"group": self.group} if self.group is not None else {})


def _texts(probes: Sequence[Probe], outcomes: Mapping[str, Outcome]) -> list[str]:
    return [outcomes[p.id].text.strip() for p in probes]


def known_probes(probes: Sequence[Probe], outcomes: Mapping[str, Outcome],
                 min_rouge: float | None) -> list[Probe]:
    """The probes the reference answers: MCQ correctly, others with at least ``min_rouge``
    ROUGE-L recall (all probes if ``min_rouge`` is None)."""
    if min_rouge is None or not probes:
        return list(probes)
    known = []
    for probe in probes:
        text = outcomes[probe.id].text.strip()
        if is_asked_as_mcq(probe):
            score = mcq_accuracy([text], [probe]).value
        else:
            score = rouge_l_recall([text], [probe.answer]).value
        if score >= min_rouge:
            known.append(probe)
    return known


def _blocked(probes: Sequence[Probe], outcomes: Mapping[str, Outcome]) -> MetricResult:
    return _mean_result([float(outcomes[p.id].blocked) for p in probes])


def score_outcomes(row: Row, probes: Mapping[ProbeKind, Sequence[Probe]],
                   outcomes: Mapping[str, Outcome], *, detect: bool, refusal_text: str) -> None:
    """Add the text-tier metrics of answers (``outcomes`` by probe id) to ``row``: ROUGE-L of
    open questions, MCQ accuracy of lettered ones, refusal rates of all."""
    for kind in KINDS:
        scored = probes.get(kind, ())
        if not scored:
            continue
        if detect:
            row.add(f"{kind}_blocked", _blocked(scored, outcomes))
            continue
        mcq = [p for p in scored if is_asked_as_mcq(p)]
        if mcq:
            row.add(f"{kind}_mcq", mcq_accuracy(_texts(mcq, outcomes), mcq))
        open_ = [p for p in scored if not is_asked_as_mcq(p)]
        if open_:
            row.add(f"{kind}_rouge_l",
                    rouge_l_recall(_texts(open_, outcomes), [p.answer for p in open_]))
        if kind == "forget":
            row.add("forget_refusal", refusal_rate(_texts(scored, outcomes),
                                                   extra_phrases=(refusal_text,)))
        elif kind != "utility":
            row.add(f"{kind}_over_refusal", over_refusal_rate(_texts(scored, outcomes),
                                                              extra_phrases=(refusal_text,)))


def cost_metrics(row: Row, outcomes: Sequence[Outcome], reference: Sequence[Outcome], *,
                 tokens: bool) -> None:
    """Blocked share, added latency and, with ``tokens``, prompt tokens and prompt tokens
    added vs the reference (paired by position; only requests that reached the model)."""
    if not outcomes:
        return
    row.add("blocked_share", _mean_result([float(o.blocked) for o in outcomes]))
    row.add("added_ms", _mean_result([o.added_ms for o in outcomes]))
    if not tokens:
        return
    reached = [o.prompt_tokens for o in outcomes if o.prompt_tokens > 0]
    if reached:
        row.add("prompt_tokens", _mean_result([float(t) for t in reached]))
    added = [float(o.prompt_tokens - r.prompt_tokens)
             for o, r in zip(outcomes, reference, strict=True)
             if o.prompt_tokens > 0 and r.prompt_tokens > 0]
    if added:
        row.add("added_prompt_tokens", _mean_result(added))


def _mean_result(values: list[float]) -> MetricResult:
    return MetricResult(mean(values), values, "T", higher_is_better=False, name="mean")
