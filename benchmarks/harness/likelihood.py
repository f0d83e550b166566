"""Tier L metrics (TOFU probability, truth ratio, model utility) through a policy.

Each probe is scored in the context the model would actually see: the policy's input side runs
first (prefix, ICUL demonstrations), and a request the policy blocks gets the refusal, which
gives every candidate answer probability 0, so its probability is 0 and its truth ratio R is 1
(true and false answers are indistinguishable). Maini et al. 2024 (TOFU) define the metrics;
``benchmarks.metrics.likelihood`` computes them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

from benchmarks.datasets import Probe, ProbeKind
from benchmarks.errors import BenchmarkError
from benchmarks.harness.runner import InProcessAsker, Outcome
from benchmarks.harness.scoring import Row
from benchmarks.harness.tasks import Task
from benchmarks.metrics.base import MetricResult, mean
from benchmarks.metrics.likelihood import model_utility, truth_ratios
from benchmarks.metrics.rouge import rouge_l_recall

__all__ = ["likelihood_metrics"]

Scored = tuple[float, int]


def _context(asker: InProcessAsker, loop: asyncio.Runner, task: Task) -> str | None:
    prepared = loop.run(asker.prepare(task.request))
    if prepared is None:
        return None
    if prepared.kind == "completion":
        return prepared.prompt or ""
    return str(asker.backend.inner.render_chat(prepared.messages))  # type: ignore[attr-defined]


def _per_token(scored: Scored) -> float:
    return math.exp(scored[0] / max(scored[1], 1))


def _score_kind(asker: InProcessAsker, loop: asyncio.Runner, probes: Sequence[Probe],
                tasks: Mapping[str, Task]) -> tuple[list[float], list[float]]:
    """Per-item (probability, raw truth ratio R); gold probability normalised over the options
    for MCQ-style probes (TOFU's real authors / world facts)."""
    contexts = [_context(asker, loop, tasks[p.id]) for p in probes]
    pairs: list[tuple[str, str]] = []
    for probe, context in zip(probes, contexts, strict=True):
        if context is not None:
            para = probe.paraphrased_answer or probe.answer
            pairs += [(context, f" {a}") for a in (probe.answer, para, *probe.perturbed_answers)]
    scores = iter(asker.backend.inner.loglikelihood_tokens(pairs))  # type: ignore[attr-defined]
    probabilities, ratios = [], []
    for probe, context in zip(probes, contexts, strict=True):
        if context is None:
            probabilities.append(0.0)
            ratios.append(1.0)
            continue
        gold, para = next(scores), next(scores)
        perturbed = [next(scores) for _ in probe.perturbed_answers]
        probability = _per_token(gold)
        if probe.is_mcq:
            probability /= probability + math.fsum(_per_token(p) for p in perturbed)
        probabilities.append(probability)
        ratios.append(truth_ratios([para], [perturbed])[0])
    return probabilities, ratios


def _result(values: list[float], name: str) -> MetricResult:
    return MetricResult(mean(values), values, "L", higher_is_better=True, name=name)


def likelihood_metrics(row: Row, asker: InProcessAsker, loop: asyncio.Runner,
                       probes: Mapping[ProbeKind, Sequence[Probe]], tasks: Mapping[str, Task],
                       outcomes: Mapping[str, Outcome]) -> None:
    """Add forget/retain probability and truth ratio and, with retain and neighbour probes,
    TOFU's model utility (harmonic mean over {probability, ROUGE-L, truth ratio} x groups)."""
    if not hasattr(asker.backend.inner, "loglikelihood_tokens"):
        raise BenchmarkError(f"likelihood metrics need an engine with log-probs, not "
                             f"{asker.backend.inner!r}")
    groups: dict[str, list[Probe]] = {"forget": [], "retain": []}
    kinds: tuple[ProbeKind, ...] = ("forget", "retain", "neighbour")
    for kind in kinds:
        for probe in probes.get(kind, ()):
            if probe.perturbed_answers:
                group = (probe.type or kind) if kind == "neighbour" else kind
                groups.setdefault(group, []).append(probe)
    utility: dict[str, float] = {}
    for group, members in groups.items():
        if not members:
            continue
        probabilities, ratios = _score_kind(asker, loop, members, tasks)
        if group == "forget":
            row.add("forget_probability", _result(probabilities, "probability"))
            row.add("forget_truth_ratio", _result([min(r, 1 / r) if r > 0 else 0.0 for r in ratios],
                                                         "truth_ratio"))
            continue
        kept = [max(0.0, 1.0 - r) for r in ratios]
        if group == "retain":
            row.add("retain_probability", _result(probabilities, "probability"))
            row.add("retain_truth_ratio", _result(kept, "truth_ratio"))
        rouge = rouge_l_recall([outcomes[p.id].text for p in members], [p.answer for p in members])
        utility.update({f"{group}/probability": mean(probabilities),
                        f"{group}/rouge_l": rouge.value, f"{group}/truth_ratio": mean(kept)})
    if len(utility) >= 6:
        row.add("model_utility", model_utility(utility))
