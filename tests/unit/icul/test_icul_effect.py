"""ICUL on the real embedded Gemma 3 270M (transformers, CPU, greedy): TOFU forget01 answers.

The policy forgets the two forget01 authors, given their even-numbered QA pairs as example
questions; its retain examples are the first 40 retain99 QA pairs. Scored: the 20 odd-numbered
questions, never given to the policy, as completion requests prepared by the server's own
``Pipeline.admit``. The base model never saw TOFU's fictitious authors, so there is little to
forget: any few-shot context teaches TOFU's answer style and *raises* ROUGE-L recall over the
plain prompt. ICUL is therefore judged against the same policy without forget demonstrations
(k=0): the forget demos must be the query author's own questions, must change most answers, and
must not raise recall (they carry refusals, never the gold answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.datasets.base import Benchmark, Probe
from benchmarks.datasets.tofu import load_tofu
from benchmarks.metrics.rouge import rouge_l_recall
from proxy.backends.base import GenerationParams
from proxy.backends.transformers_backend import TransformersBackend
from proxy.config import ForgetTargetConfig, ICULConfig, PolicyConfig, QAExample
from proxy.config import TransformersModelConfig
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime, Request
from proxy.policy_runtime import CompiledRuntimePolicy, compile_runtime_policy

pytestmark = pytest.mark.slow

MODEL = "gemma"
QUERY = "Question: {}\nAnswer:"
PARAMS = GenerationParams(max_tokens=24, temperature=0, stop=("\n",))
ICUL_K, ICUL_S = 2, 4
N_RETAIN = 40
# Greedy decoding is deterministic here, but other CPUs' kernels may flip a token or two.
RECALL_TOLERANCE = 0.02


@dataclass(frozen=True)
class Scored:
    """Greedy answers to the held-out questions and their mean ROUGE-L recall."""

    answers: list[str]
    recall: float


@pytest.fixture(scope="module")
def tofu() -> Benchmark:
    return load_tofu(split="forget01")


@pytest.fixture(scope="module")
def held_out(tofu: Benchmark) -> list[Probe]:
    return list(tofu.forget_probes[1::2])


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    cfg = TransformersModelConfig(backend="transformers", device="cpu", batch_size=10)
    return TransformersBackend.from_config(cfg)


def _policy(tofu: Benchmark, k: int) -> PolicyConfig:
    given = tofu.forget_probes[0::2]
    targets = [
        ForgetTargetConfig(
            id=t.id, name=t.name, aliases=list(t.aliases),
            questions=[QAExample(question=p.question, answer=p.answer)
                       for p in given if p.target_id == t.id],
        )
        for t in tofu.targets
    ]
    retain = [QAExample(question=p.question, answer=p.answer) for p in tofu.retain_probes[:N_RETAIN]]
    icul = ICULConfig(type="icul", k=k, s=ICUL_S, completion_query="verbatim")
    return PolicyConfig(forget=targets, retain=retain, methods=[icul])


@pytest.fixture(scope="module")
def runtimes(
    tofu: Benchmark, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, CompiledRuntimePolicy]:
    state_dir = tmp_path_factory.mktemp("icul_state")
    return {
        name: compile_runtime_policy(name, _policy(tofu, k), base_dir=Path.cwd(), state_dir=state_dir)
        for name, k in (("control", 0), ("icul", ICUL_K))
    }


@pytest.fixture(scope="module")
def pipeline(backend: TransformersBackend, runtimes: dict[str, CompiledRuntimePolicy]) -> Pipeline:
    policies: dict[str, PolicyRuntime] = dict(runtimes)
    return Pipeline(backends={MODEL: backend}, policies=policies, metrics=Metrics(), store=None)


async def _score(pipeline: Pipeline, probes: list[Probe], policy: str | None) -> Scored:
    """Prepare each question through ``admit``, then answer all of them in one batched call."""
    prompts = []
    for probe in probes:
        request = Request("completion", MODEL, [], PARAMS, probe.id, prompt=QUERY.format(probe.question))
        decision, prepared = await pipeline.admit(request, policy)
        assert decision.blocking is None
        prompts.append(prepared.prompt or "")
    backend = pipeline.backends[MODEL]
    assert isinstance(backend, TransformersBackend)
    answers = [g.text.strip() for g in backend.generate(prompts, PARAMS)]
    return Scored(answers, rouge_l_recall(answers, [p.answer for p in probes]).value)


def test_forget_demonstrations_are_the_query_authors_questions(
    tofu: Benchmark, runtimes: dict[str, CompiledRuntimePolicy], held_out: list[Probe]
) -> None:
    author = {p.question: p.target_id for p in tofu.forget_probes}
    (method,) = runtimes["icul"].icul
    for probe in held_out:
        demos = method.forget_demonstrations(QUERY.format(probe.question))
        assert len(demos) == ICUL_K
        assert {author[d.question] for d in demos} == {probe.target_id}


async def test_icul_changes_answers_without_raising_recall(
    pipeline: Pipeline, runtimes: dict[str, CompiledRuntimePolicy], held_out: list[Probe]
) -> None:
    plain = await _score(pipeline, held_out, None)
    control = await _score(pipeline, held_out, "control")
    icul = await _score(pipeline, held_out, "icul")
    changed = sum(a != b for a, b in zip(icul.answers, control.answers, strict=True))
    refusals = sum(a == runtimes["icul"].config.refusal_text for a in icul.answers)
    print(
        f"\nTOFU forget01, {len(held_out)} held-out questions, ROUGE-L recall vs gold: "
        f"plain {plain.recall:.3f} | retain demos only (k=0, s={ICUL_S}) {control.recall:.3f} | "
        f"ICUL (k={ICUL_K}, s={ICUL_S}) {icul.recall:.3f}; ICUL changed {changed}/{len(held_out)} "
        f"answers vs k=0, refused {refusals}"
    )
    assert changed > len(held_out) / 2
    assert icul.recall <= control.recall + RECALL_TOLERANCE
