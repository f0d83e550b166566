"""Micro-batching of embeddings: same vectors as direct calls, fewer model calls under load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from filters.batching import BatchingEmbedder
from filters.embedder import LocalEmbedder

TEXTS = [f"Question number {i} about topic {i % 7}?" for i in range(96)]


@pytest.fixture(scope="module")
def minilm() -> LocalEmbedder:
    return LocalEmbedder()


def test_concurrent_calls_are_batched_and_exact(minilm: LocalEmbedder) -> None:
    direct = minilm.embed(TEXTS)
    batching = BatchingEmbedder(minilm, max_batch=32, max_wait_ms=5)
    with ThreadPoolExecutor(max_workers=32) as pool:
        rows = list(pool.map(lambda t: batching.embed([t])[0], TEXTS))
    np.testing.assert_allclose(np.stack(rows), direct, atol=1e-5)
    assert batching.stats.texts == len(TEXTS)
    assert batching.stats.batches < len(TEXTS) / 2, batching.stats
    print(
        f"{len(TEXTS)} calls -> {batching.stats.batches} batches (mean {batching.stats.mean_batch:.1f})"
    )


def test_a_lone_call_does_not_wait(minilm: LocalEmbedder) -> None:
    batching = BatchingEmbedder(minilm, max_wait_ms=0)
    assert batching.embed(["one text"]).shape == (1, 384)
    assert batching.embed([]).shape[0] == 0
    assert batching.stats.batches == 1


class _Broken:
    model_id = "broken"

    def embed(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("embedder down")


def test_failures_reach_every_caller() -> None:
    batching = BatchingEmbedder(_Broken())
    with pytest.raises(RuntimeError, match="embedder down"):
        batching.embed(["x"])
    with pytest.raises(RuntimeError, match="embedder down"):
        batching.embed(["y"])
