"""Which probes are scored, and the policy built from everything else.

Probe hygiene (docs/ARCHITECTURE.md): never train or calibrate on the probes you report.
Each probe list is split once,
deterministically from the seed: a ``holdout_share`` of the forget, neighbour and retain probes
becomes policy material (example questions of the forget targets, retain examples) and is never
scored; candidates for scoring are sampled from the rest. Utility (MCQ) probes are never given
to a policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks.datasets import Benchmark, ForgetTarget, Probe, ProbeKind
from benchmarks.datasets.base import sample
from benchmarks.harness.config import DatasetSpec
from proxy.core.config import DocumentConfig, ForgetTargetConfig, PolicyConfig, QAExample

__all__ = ["KINDS", "ProbeSplit", "base_policy", "split_probes"]

KINDS: tuple[ProbeKind, ...] = ("forget", "neighbour", "retain", "utility")
_POLICY_KINDS: tuple[ProbeKind, ...] = ("forget", "neighbour", "retain")


@dataclass(frozen=True)
class ProbeSplit:
    """``material``: probes given to the policy; ``candidates``: probes sampled for scoring."""

    material: dict[ProbeKind, tuple[Probe, ...]]
    candidates: dict[ProbeKind, tuple[Probe, ...]]

    def counts(self) -> dict[str, dict[str, int]]:
        """Sizes of both sides, for provenance."""
        return {"policy_material": {k: len(v) for k, v in self.material.items()},
                "candidates": {k: len(v) for k, v in self.candidates.items()}}


def _rank(seed: int, question: str) -> str:
    return hashlib.sha256(f"{seed}\x1fholdout\x1f{question}".encode()).hexdigest()


def _held_questions(probes: Sequence[Probe], share: float, seed: int) -> set[str]:
    questions = sorted({p.question for p in probes}, key=lambda q: _rank(seed, q))
    return set(questions[:round(share * len(questions))])


def split_probes(benchmark: Benchmark, spec: DatasetSpec, *, seed: int) -> ProbeSplit:
    """Hold out policy material, then sample the scoring candidates from the rest.

    The split is by question text, so a question listed twice (RWKU has such duplicates) is
    never both policy material and scored.
    """
    held = set().union(*(_held_questions(benchmark.probes(k), spec.holdout_share, seed)
                         for k in _POLICY_KINDS))
    material: dict[ProbeKind, tuple[Probe, ...]] = {}
    candidates: dict[ProbeKind, tuple[Probe, ...]] = {}
    for kind in KINDS:
        probes = benchmark.probes(kind)
        material[kind] = tuple(p for p in probes if p.question in held and kind != "utility")
        pool = [p for p in probes if p.question not in held]
        candidates[kind] = sample(pool, getattr(spec.candidates, kind), seed=seed, label=kind)
    return ProbeSplit(material, candidates)


def _examples(probes: Iterable[Probe]) -> list[QAExample]:
    seen: dict[str, QAExample] = {}
    for probe in probes:
        perturbed = probe.perturbed_answers[0] if probe.perturbed_answers else None
        seen.setdefault(probe.question, QAExample(
            question=probe.question, answer=probe.answer, perturbed_answer=perturbed))
    return list(seen.values())


def _target(target: ForgetTarget, split: ProbeSplit,
            max_documents: int | None) -> ForgetTargetConfig:
    scored = {p.question for p in split.candidates["forget"]}
    own = [QAExample(question=q, answer=a) for q, a in zip(target.questions, target.answers,
                                                           strict=True) if q not in scored]
    held = _examples(p for p in split.material["forget"] if p.target_id == target.id)
    questions = {qa.question: qa for qa in [*held, *own]}
    documents = target.documents if max_documents is None else target.documents[:max_documents]
    return ForgetTargetConfig(
        id=target.id, name=target.name, aliases=list(target.aliases),
        description=target.description or None,
        documents=[DocumentConfig(text=text) for text in documents],
        questions=list(questions.values()))


def base_policy(benchmark: Benchmark, split: ProbeSplit, spec: DatasetSpec) -> PolicyConfig:
    """The dataset's targets and retain examples with no methods (variants add them).

    A target's own example questions that are also scoring candidates (TOFU's forget QA pairs)
    are left out, as are all scored probes.
    """
    retain = _examples([*split.material["neighbour"], *split.material["retain"]])
    return PolicyConfig(
        description=f"forget the {benchmark.name} targets",
        forget=[_target(t, split, spec.max_documents) for t in benchmark.targets],
        retain=retain)
