"""Benchmark metrics; each returns a ``MetricResult`` labelled with its tier.

Tier T needs only generated text (any endpoint, the proxy included): ROUGE-L recall, refusal
rate, MCQ accuracy, generation-based Extraction Strength. Tier L needs log-probs of given
continuations: TOFU probability, truth ratio, model utility, forget quality. ``METRICS`` maps
aliases to the metric functions, importing each module on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.metrics.base import MetricResult, Tier
from proxy.core.registry import Registry

__all__ = ["METRICS", "MetricResult", "Tier"]

METRICS: Registry[Callable[..., MetricResult]] = Registry("metric")
METRICS.register("rouge_l_recall", "benchmarks.metrics.rouge:rouge_l_recall")
METRICS.register("refusal_rate", "benchmarks.metrics.refusal:refusal_rate")
METRICS.register("over_refusal_rate", "benchmarks.metrics.refusal:over_refusal_rate")
METRICS.register("mcq_accuracy", "benchmarks.metrics.mcq:mcq_accuracy")
METRICS.register("extraction_strength", "benchmarks.metrics.extraction:extraction_strength")
METRICS.register("tofu_probability", "benchmarks.metrics.likelihood:tofu_probability")
METRICS.register("truth_ratio", "benchmarks.metrics.likelihood:truth_ratio")
METRICS.register("model_utility", "benchmarks.metrics.likelihood:model_utility")
METRICS.register("forget_quality", "benchmarks.metrics.likelihood:forget_quality")
