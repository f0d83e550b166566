"""The ICUL method of a policy: retain demonstrations by ERASE or at random, exact removal."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from icul.context import ICULMethod
from proxy.core.config import ForgetTargetConfig, ICULConfig, QAExample

RETAIN = [QAExample(question=f"Question {i}?", answer=f"Answer {i}.") for i in range(12)]
TARGET = ForgetTargetConfig(id="t", name="Target", questions=[{"question": "Who is Target?", "answer": "A."}])


class _HashEmbedder:
    """Deterministic unit vectors per text (the real MiniLM is exercised in test_erase.py)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=8)
                for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 8)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


class _NoIndex:
    def search(self, vectors: np.ndarray, k: int = 1) -> list[list[tuple[float, object]]]:
        return [[] for _ in range(len(vectors))]


def _method(selection: str, seed: int = 0) -> ICULMethod:
    cfg = ICULConfig(type="icul", k=1, s=4, retain_selection=selection, seed=seed)  # type: ignore[arg-type]
    return ICULMethod(cfg, targets=[TARGET], retain=RETAIN, index=_NoIndex(), embedder=_HashEmbedder(),
                      refusal_text="No.")


@pytest.mark.parametrize("selection", ["erase", "random"])
def test_selection_is_deterministic_and_removal_equals_a_fresh_pool(selection: str) -> None:
    first, second = _method(selection), _method(selection)
    chosen = first.retain_demonstrations()
    assert len(chosen) == 4 and chosen == second.retain_demonstrations()
    removed = chosen[0].question
    first.remove_retain(removed)
    fresh = ICULMethod(first.cfg, targets=[TARGET], retain=[r for r in RETAIN if r.question != removed],
                       index=_NoIndex(), embedder=_HashEmbedder(), refusal_text="No.")
    assert first.retain_demonstrations() == fresh.retain_demonstrations()
    assert removed not in [d.question for d in first.retain_demonstrations()]
    with pytest.raises(KeyError):
        first.remove_retain(removed)


def test_random_selection_depends_on_the_seed() -> None:
    samples = {tuple(d.question for d in _method("random", seed).retain_demonstrations()) for seed in range(5)}
    assert len(samples) > 1
