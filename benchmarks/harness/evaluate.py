"""One dataset of a bench run: select probes, deploy the variants, ask, score.

Neighbour/retain candidates that name a forget target are left out first
(:mod:`benchmarks.harness.hygiene`). The no-defence variant answers every remaining candidate;
with ``known_min_rouge`` only the probes it answers are scored (RWKU on a small model:
docs/ARCHITECTURE.md, "Scoring known probes"), and those counts are reported. Then every variant answers the scored probes through the same
request path, with Extraction Strength and tier L metrics where the config asks for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.datasets import Benchmark, Probe, ProbeKind, load_benchmark
from benchmarks.harness.backends import OracleBackend, RecordingBackend
from benchmarks.harness.breakdown import group_rows
from benchmarks.harness.cache import ResultCache, fingerprint, guard_code_digest
from benchmarks.harness.config import BenchConfig, DatasetSpec
from benchmarks.harness.hygiene import Exclusion, exclude_naming_targets
from benchmarks.harness.likelihood import likelihood_metrics
from benchmarks.harness.methods import METHOD_KINDS, Variant
from benchmarks.harness.policies import KINDS, ProbeSplit, base_policy, split_probes
from benchmarks.harness.runner import InProcessAsker, Outcome, run_tasks
from benchmarks.harness.scoring import Row, cost_metrics, known_probes, score_outcomes
from benchmarks.harness.tasks import Task, is_asked_as_mcq, probe_task
from benchmarks.harness.transport import Deployment, InProcessDeployment, serve_http
from benchmarks.metrics.base import MetricResult
from benchmarks.metrics.extraction import extraction_strength
from proxy.core.config import PolicyConfig

__all__ = ["BenchContext", "DatasetResult", "evaluate_dataset"]

DEFAULT_REFUSAL = str(PolicyConfig.model_fields["refusal_text"].default)


@dataclass
class BenchContext:
    """What every dataset of a run shares; ``backend`` is the loaded bench model (in-process)."""

    config: BenchConfig
    loop: asyncio.Runner
    out_dir: Path
    state_dir: Path
    data_dir: Path | str | None
    backend: RecordingBackend | None = None


@dataclass
class DatasetResult:
    """A scored dataset: the probes used, the rows, and what the answers were; ``exclusion``
    holds the candidates left out for naming a target, ``groups`` the rows per level and
    attack type (:mod:`benchmarks.harness.breakdown`)."""

    spec: DatasetSpec
    benchmark: Benchmark
    split: ProbeSplit
    scored: dict[ProbeKind, list[Probe]]
    rows: list[Row]
    exclusion: Exclusion | None = None
    groups: list[Row] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    cache_files: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class _Asking:
    """Tasks and cached answers of one variant on one dataset."""

    def __init__(self, ctx: BenchContext, spec: DatasetSpec, deployment: Deployment,
                 variant: Variant, benchmark: str) -> None:
        self.ctx, self.spec, self.variant, self.benchmark = ctx, spec, variant, benchmark
        self.asker = deployment.asker(variant)
        config = ctx.config
        guarded = variant.policy is not None and bool(variant.policy.methods)
        key = fingerprint(config.model.model_dump(mode="json"), config.generation.model_dump(),
                          variant.policy.model_dump(mode="json") if variant.policy else None,
                          variant.model.model_dump(mode="json") if variant.model else None,
                          config.transport, spec.mode, spec.loader,
                          guard_code_digest() if guarded else None)
        tag = f"{spec.name}-{fingerprint(spec.loader, spec.mode)[:6]}"
        path = ctx.out_dir / "cache" / tag / f"{variant.slug}.seed{config.seed}.{key}.jsonl"
        self.cache = ResultCache(path)
        self.cost_s = 0.0  # what the answers asked for so far cost (cached costs included)

    def _run(self, tasks: Sequence[Task], desc: str) -> dict[str, Outcome]:
        outcomes = run_tasks(self.ctx.loop, self.asker, tasks, self.cache, desc=desc)
        self.cost_s += sum(outcomes[key].cost_ms for key in {t.key for t in tasks}) / 1000
        return outcomes

    def task(self, probe: Probe, prefill: str = "") -> Task:
        config = self.ctx.config
        return probe_task(self.benchmark, probe, config.generation, model=config.model_name,
                          seed=config.seed, prefill=prefill)

    def answers(self, probes: Sequence[Probe], label: str = "") -> dict[str, Outcome]:
        """Outcomes by probe id."""
        tasks = {p.id: self.task(p) for p in probes}
        outcomes = self._run(list(tasks.values()), f"{self.spec.key} {self.variant.label}{label}")
        return {pid: outcomes[task.key] for pid, task in tasks.items()}

    def extraction(self, probes: Sequence[Probe]) -> MetricResult:
        """Generation-based Extraction Strength over ``probes`` (prefill through the policy)."""
        by_id = {p.id: p for p in probes}

        def generate(pairs: list[tuple[str, str]]) -> list[str]:
            tasks = [self.task(by_id[pid], prefix) for pid, prefix in pairs]
            outcomes = self._run(tasks, f"{self.spec.key} {self.variant.label} ES")
            return [outcomes[t.key].text for t in tasks]

        return extraction_strength(generate, list(by_id), [p.answer for p in probes],
                                   n_prefixes=self.spec.extraction_strength or 1)


@contextmanager
def _deploy(ctx: BenchContext, variants: Sequence[Variant],
            oracle: Mapping[str, str] | None, spec: DatasetSpec) -> Iterator[Deployment]:
    if ctx.config.transport == "http":
        with serve_http(ctx.config, variants, loop=ctx.loop, state_dir=ctx.state_dir,
                        work_dir=ctx.out_dir / "http" / spec.key) as remote:
            yield remote
        return
    backend = RecordingBackend(OracleBackend(oracle)) if oracle is not None else ctx.backend
    if backend is None:
        raise RuntimeError("the bench model is not loaded")
    local = InProcessDeployment(ctx.config, variants, backend=backend, state_dir=ctx.state_dir,
                                loop=ctx.loop)
    try:
        yield local
    finally:
        local.close()


def _prompt_text(task: Task) -> str:
    request = task.request
    return request.prompt if request.prompt is not None else str(request.messages[-1]["content"])


def _oracle(benchmark: str, split: ProbeSplit, ctx: BenchContext) -> dict[str, str]:
    config = ctx.config
    return {_prompt_text(t): t.probe.answer
            for probes in split.candidates.values() for p in probes
            for t in [probe_task(benchmark, p, config.generation, model=config.model_name,
                                 seed=config.seed)]}


def _select(spec: DatasetSpec, candidates: Mapping[ProbeKind, Sequence[Probe]],
            reference: Mapping[str, Outcome]) -> dict[ProbeKind, list[Probe]]:
    scored: dict[ProbeKind, list[Probe]] = {}
    for kind in KINDS:
        probes = list(candidates[kind])
        if kind != "utility" and spec.mode == "generate":
            probes = known_probes(probes, reference, spec.known_min_rouge)
        scored[kind] = probes[: spec.max_scored] if spec.max_scored else probes
    return scored


def _refusal(variant: Variant) -> str:
    return variant.policy.refusal_text if variant.policy else DEFAULT_REFUSAL


def _score(asking: _Asking, spec: DatasetSpec, scored: Mapping[ProbeKind, list[Probe]],
           reference: Mapping[str, Outcome]) -> tuple[Row, dict[str, Outcome]]:
    variant = asking.variant
    row = Row(spec.key, variant.method, variant.label, variant.knob, variant.value,
              training=variant.training)
    probes = [p for kind in KINDS for p in scored[kind]]
    outcomes = asking.answers(probes)
    score_outcomes(row, scored, outcomes, detect=spec.mode == "detect",
                   refusal_text=_refusal(variant))
    open_forget = [p for p in scored["forget"] if not is_asked_as_mcq(p)]
    if spec.extraction_strength and spec.mode == "generate" and open_forget:
        row.add("forget_es", asking.extraction(open_forget))
    scoring_started = time.perf_counter()
    if spec.likelihood and isinstance(asking.asker, InProcessAsker):
        tasks = {p.id: asking.task(p) for p in probes}
        likelihood_metrics(row, asking.asker, asking.ctx.loop, scored, tasks, outcomes)
    cost_metrics(row, [outcomes[p.id] for p in probes], [reference[p.id] for p in probes],
                 tokens=spec.mode == "generate")
    row.wall_s = asking.cost_s + time.perf_counter() - scoring_started
    return row, outcomes


def evaluate_dataset(ctx: BenchContext, spec: DatasetSpec) -> DatasetResult:
    """Run every method of the config on one dataset."""
    config = ctx.config
    started = time.perf_counter()
    benchmark = load_benchmark(spec.name, ctx.data_dir, seed=config.seed, **spec.loader)
    split = split_probes(benchmark, spec, seed=config.seed)
    base = base_policy(benchmark, split, spec)
    variants = [v for m in config.methods if m.runs_on(spec.name)
                for v in METHOD_KINDS.get(m.kind)(m, base, benchmark)]
    reference = next(v for v in variants if v.method == config.reference.name)
    oracle = _oracle(benchmark.name, split, ctx) if spec.mode == "detect" else None
    exclusion = exclude_naming_targets(split.candidates, benchmark.targets)
    result = DatasetResult(spec, benchmark, split, {}, [], exclusion=exclusion)
    with _deploy(ctx, variants, oracle, spec) as deployment:
        ref_asking = _Asking(ctx, spec, deployment, reference, benchmark.name)
        candidates = [p for kind in KINDS for p in exclusion.kept[kind]]
        reference_outcomes = ref_asking.answers(candidates, " (all candidates)")
        result.scored = _select(spec, exclusion.kept, reference_outcomes)
        for variant in variants:
            asking = _Asking(ctx, spec, deployment, variant, benchmark.name)
            row, outcomes = _score(asking, spec, result.scored, reference_outcomes)
            result.rows.append(row)
            result.groups += group_rows(row, result.scored, outcomes,
                                        detect=spec.mode == "detect",
                                        refusal_text=_refusal(variant))
            result.cache_files.append(str(asking.cache.path))
            result.items += [{"dataset": spec.key, "variant": variant.label, "probe_id": p.id,
                              "kind": p.kind, "prompt": _prompt_text(asking.task(p)),
                              "answer": p.answer, **outcomes[p.id].to_record()}
                             for kind in KINDS for p in result.scored[kind]]
    result.wall_s = time.perf_counter() - started
    return result
