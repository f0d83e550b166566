"""ICUL on the real embedded Gemma 3 270M (transformers, CPU, greedy) with TOFU forget01.

The policy forgets the two forget01 authors, given two of every five of their QA pairs (16) as
example questions; its retain examples are the first 40 retain99 QA pairs. Scored: TOFU's
paraphrases of those 16 questions (never given to the policy verbatim), as completion requests
prepared by the server's own ``Pipeline.admit`` and answered in one batched call.

The base model never saw TOFU's fictitious authors, so there is little to forget: any few-shot
context teaches TOFU's answer style and *raises* ROUGE-L recall over the plain prompt. ICUL is
therefore judged against the same policy without forget demonstrations (k=0, s=4). Measured
here: plain 0.083, k=0 0.235, ICUL 0.159, 4 of 16 answers refused. Questions the policy was not
given are not forgotten: on 16 such questions of the same authors (policy given the other 24)
k=0 scored 0.233 and ICUL 0.234.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.datasets.base import Benchmark, Probe
from benchmarks.datasets.tofu import load_tofu
from benchmarks.icul_overhead import QUERY, tofu_icul_policy
from benchmarks.metrics.rouge import rouge_l_recall
from proxy.core.types import GenerationParams
from proxy.backends.transformers_backend import TransformersBackend
from proxy.core.config import TransformersModelConfig
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime, Request
from proxy.policy import CompiledPolicy, compile_policy

pytestmark = pytest.mark.slow

MODEL = "gemma"
PARAMS = GenerationParams(max_tokens=16, temperature=0, stop=("\n",))
ICUL_K, ICUL_S = 2, 4


@dataclass(frozen=True)
class Scored:
    """Greedy answers to the scored questions and their mean ROUGE-L recall."""

    answers: list[str]
    recall: float


@pytest.fixture(scope="module")
def tofu() -> Benchmark:
    return load_tofu(split="forget01")


@pytest.fixture(scope="module")
def given(tofu: Benchmark) -> list[Probe]:
    """The forget QA pairs given to the policy; their paraphrases are scored."""
    return [p for i, p in enumerate(tofu.forget_probes) if i % 5 in (0, 2)]


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    cfg = TransformersModelConfig(backend="transformers", device="cpu", batch_size=16)
    return TransformersBackend.from_config(cfg)


@pytest.fixture(scope="module")
def runtimes(
    tofu: Benchmark, given: list[Probe], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, CompiledPolicy]:
    state_dir = tmp_path_factory.mktemp("icul_state")
    policies = {"control": tofu_icul_policy(tofu, given, k=0, s=ICUL_S),
                "icul": tofu_icul_policy(tofu, given, k=ICUL_K, s=ICUL_S)}
    return {name: compile_policy(name, policy, base_dir=Path.cwd(), state_dir=state_dir)
            for name, policy in policies.items()}


@pytest.fixture(scope="module")
def pipeline(backend: TransformersBackend, runtimes: dict[str, CompiledPolicy]) -> Pipeline:
    policies: dict[str, PolicyRuntime] = dict(runtimes)
    return Pipeline(backends={MODEL: backend}, policies=policies, metrics=Metrics(), store=None)


def _query(probe: Probe) -> str:
    return QUERY.format(probe.paraphrased_question)


async def _score(pipeline: Pipeline, probes: list[Probe], policy: str | None) -> Scored:
    """Prepare each query through ``admit``, then answer all of them in one batched call."""
    prompts = []
    for probe in probes:
        request = Request("completion", MODEL, [], PARAMS, probe.id, prompt=_query(probe))
        decision, prepared = await pipeline.admit(request, policy)
        assert decision.blocking is None
        prompts.append(prepared.prompt or "")
    backend = pipeline.backends[MODEL]
    assert isinstance(backend, TransformersBackend)
    answers = [g.text.strip() for g in backend.generate(prompts, PARAMS)]
    return Scored(answers, rouge_l_recall(answers, [p.answer for p in probes]).value)


def test_nearest_forget_demonstration_is_the_paraphrased_question(
    runtimes: dict[str, CompiledPolicy], given: list[Probe]
) -> None:
    (method,) = runtimes["icul"].icul
    nearest = [method.forget_demonstrations(_query(p))[0].question for p in given]
    hits = sum(q == p.question for q, p in zip(nearest, given, strict=True))
    assert hits >= 0.75 * len(given)


async def test_icul_changes_answers_and_lowers_recall(
    pipeline: Pipeline, runtimes: dict[str, CompiledPolicy], given: list[Probe]
) -> None:
    plain = await _score(pipeline, given, None)
    control = await _score(pipeline, given, "control")
    icul = await _score(pipeline, given, "icul")
    changed = sum(a != b for a, b in zip(icul.answers, control.answers, strict=True))
    refused = sum(a == runtimes["icul"].config.refusal_text for a in icul.answers)
    print(
        f"\nTOFU forget01, {len(given)} paraphrased forget questions, ROUGE-L recall vs gold: "
        f"plain {plain.recall:.3f} | k=0, s={ICUL_S} {control.recall:.3f} | "
        f"ICUL k={ICUL_K}, s={ICUL_S} {icul.recall:.3f}; "
        f"ICUL changed {changed}/{len(given)} answers vs k=0 and refused {refused}"
    )
    assert changed > len(given) / 2
    assert refused >= 1
    assert icul.recall < control.recall
