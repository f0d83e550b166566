"""TOFU forget10 end to end on the real MiniLM, FAISS and scikit-learn (Maini et al. 2024).

The policy forgets the 20 forget10 authors from their 20 QA pairs each; its retain examples are
the first 20 retain authors. Scored negatives never seen in training: questions about other
retain90 authors (every 4th of authors 21-180), real_authors and world_facts. The paraphrased
questions of forget10_perturbed are never used for training or calibration.
"""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.data_dir import resolve_data_dir
from filters.input_classifier import InputClassifier
from filters.input_detector import EmbeddingDetector
from filters.base import Verdict
from filters.output_filter import OutputFilter
from proxy.core.config import PolicyConfig
from proxy.policy import CompiledPolicy, compile_policy
from tests.pipeline_stream import Streamed, stream_text
from tests.policies import input_verdicts

pytestmark = pytest.mark.slow


@cache
def _tofu_dir() -> Path:
    """TOFU under the benchmark data directory ($UNLEARN_DATA_DIR or ../shared/data)."""
    return resolve_data_dir() / "tofu"


def _rows(name: str) -> list[dict[str, object]]:
    with (_tofu_dir() / name).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _policy() -> PolicyConfig:
    forget, retain = _rows("forget10.json"), _rows("retain90.json")[:400]
    targets = [
        {
            "id": f"author-{k:02d}",
            "name": f"forget10 author {k}",
            "questions": [
                {"question": r["question"], "answer": r["answer"]}
                for r in forget[20 * k : 20 * k + 20]
            ],
        }
        for k in range(20)
    ]
    return PolicyConfig.model_validate(
        {
            "forget": targets,
            "retain": [{"question": r["question"], "answer": r["answer"]} for r in retain],
            "methods": [
                {"type": "input_detector", "aliases": False},
                {"type": "input_classifier"},
                {"type": "output_filter"},
            ],
        }
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> CompiledPolicy:
    started = time.perf_counter()
    policy = compile_policy(
        "tofu", _policy(), base_dir=_tofu_dir(), state_dir=tmp_path_factory.mktemp("c"),
        progress=False,
    )
    print(f"\ncold compile of the TOFU forget10 policy: {time.perf_counter() - started:.1f}s")
    return policy


def _guards(compiled: CompiledPolicy) -> tuple[EmbeddingDetector, InputClassifier, OutputFilter]:
    detector, classifier, output = (guard for _, guard in compiled.guards)
    assert isinstance(detector, EmbeddingDetector) and isinstance(classifier, InputClassifier)
    assert isinstance(output, OutputFilter)
    return detector, classifier, output


def _negatives() -> list[str]:
    unseen = _rows("retain90.json")[400:][::4]
    return [
        str(r["question"]) for r in unseen + _rows("real_authors.json") + _rows("world_facts.json")
    ]


def _scores(compiled: CompiledPolicy, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    detector, classifier, _ = _guards(compiled)
    vectors = detector.embedder.embed(texts)
    similarity = np.array([row[0][0] for row in detector.index.search(vectors, k=1)])
    return similarity, classifier.model.predict(vectors, texts)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def test_forget_questions_rank_above_neighbours(compiled: CompiledPolicy) -> None:
    negatives = _negatives()
    forget = [str(r["question"]) for r in _rows("forget10.json")]
    paraphrased = [str(r["paraphrased_question"]) for r in _rows("forget10_perturbed.json")]
    (sim_n, p_n), (sim_f, p_f), (sim_p, p_p) = (
        _scores(compiled, t) for t in (negatives, forget, paraphrased)
    )
    _, classifier, _ = _guards(compiled)
    print(
        f"\n{len(forget)} forget10 questions vs {len(negatives)} negatives "
        "(retain90 authors 21-180 every 4th question, real_authors, world_facts)"
    )
    for name, (neg, fgt, para) in {
        "detector similarity": (sim_n, sim_f, sim_p),
        "classifier probability": (p_n, p_f, p_p),
    }.items():
        print(f"{name} ROC AUC: forget10 {_auc(fgt, neg):.4f}, paraphrased {_auc(para, neg):.4f}")
    print(f"calibration: {classifier.report.summary()}")
    threshold = classifier.threshold
    recall = float(np.mean(p_p >= threshold))
    print(
        f"at the calibrated threshold {threshold:.3f}: paraphrase recall {recall:.3f}, "
        f"FPR {np.mean(p_n >= threshold):.3f} (retain90 {np.mean(p_n[:800] >= threshold):.3f}, "
        f"real_authors+world_facts {np.mean(p_n[800:] >= threshold):.3f})"
    )
    assert _auc(sim_f, sim_n) >= 0.98
    assert _auc(p_f, p_n) >= 0.98
    assert recall >= 0.9
    assert classifier.report.source == "calibrated"


def test_question_split_across_two_turns(compiled: CompiledPolicy) -> None:
    detector, classifier, _ = _guards(compiled)
    first = "There is an author born in Santiago, Chile in 1977, a woman."
    last = "What is her full name?"
    for guard in (detector, classifier):
        alone = guard.check_input([{"role": "user", "content": last}])
        split = guard.check_input(
            [
                {"role": "user", "content": first},
                {"role": "assistant", "content": "Go on."},
                {"role": "user", "content": last},
            ]
        )
        print(
            f"\n{guard.name}: last turn alone {alone.score:.3f}, two turns {split.score:.3f} "
            f"(threshold {guard.threshold:.3f})"
        )
        assert not alone.is_block
        assert split.is_block and split.match is not None
        assert split.match.target_id == "author-01"
    verdicts = input_verdicts(
        compiled, [{"role": "user", "content": first}, {"role": "user", "content": last}]
    )
    assert [v.action for v in verdicts] == ["block"]


def test_streamed_forget_answer_is_blocked_before_it_leaks(compiled: CompiledPolicy) -> None:
    _, _, output = _guards(compiled)
    forget = [str(r["answer"]) for r in _rows("forget10.json")]
    longest = max(forget, key=len)
    streamed = stream_text([output], list(longest))  # one character per chunk
    seen = streamed.released
    print(f"\nforget answer ({len(longest)} chars) blocked after the client saw {len(seen)} chars")
    assert streamed.blocked and longest.startswith(seen)
    assert not output.check_output([], seen, final=True).is_block
    assert len(seen) < len(longest) / 2
    assert np.mean([output.check_output([], a, final=True).is_block for a in forget]) >= 0.99


def test_neighbour_answers_pass(compiled: CompiledPolicy) -> None:
    _, _, output = _guards(compiled)
    neighbours = [str(r["answer"]) for r in _rows("retain90.json")[400:800]]
    assert stream_text([output], list(neighbours[0])) == Streamed(neighbours[0], False, "stop")
    rate = float(np.mean([output.check_output([], a, final=True).is_block for a in neighbours]))
    print(f"\noutput filter blocks {rate:.3f} of {len(neighbours)} neighbour (retain90) answers")
    assert rate <= 0.02


def test_unrelated_requests_pass_every_guard(compiled: CompiledPolicy) -> None:
    """Off-topic questions and answers pass all three guards, each below its threshold and
    timed (speed targets live in the benchmarks; the p50 is printed for reference)."""
    verdicts: list[Verdict] = []
    _, _, output = _guards(compiled)
    for i in range(11):
        messages = [
            {"role": "user", "content": f"What is a good name for a pet turtle number {i}?"}
        ]
        verdicts += input_verdicts(compiled, messages)
        verdicts.append(output.check_output(
            messages, f"Try Sheldon {i}. It is a classic turtle name. ", final=True
        ))
    timings: dict[str, list[float]] = {}
    for verdict in verdicts:
        timings.setdefault(verdict.guard, []).append(verdict.elapsed_ms)
    medians = {name: round(float(np.median(values)), 1) for name, values in timings.items()}
    print("\nguard p50 latency (ms):", medians)
    assert {name: len(values) for name, values in timings.items()} == {
        "input_detector": 11, "input_classifier": 11, "output_filter": 11}
    assert all(v.action == "allow" and v.match is None for v in verdicts), verdicts
    assert all(v.score < v.threshold and v.elapsed_ms > 0 for v in verdicts), verdicts
