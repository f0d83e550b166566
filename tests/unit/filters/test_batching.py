"""Micro-batching of embeddings and FAISS searches: same results as direct calls, fewer calls."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from filters.batching import BatchingEmbedder, MicroBatcher
from filters.embedder import LocalEmbedder
from filters.forget_index import ForgetIndex, ForgetItem
from tests.batching import check_concurrent_single_calls

TEXTS = [f"Question number {i} about topic {i % 7}?" for i in range(96)]


@pytest.fixture(scope="module")
def minilm() -> LocalEmbedder:
    return LocalEmbedder()


def test_concurrent_calls_are_batched_and_exact(minilm: LocalEmbedder) -> None:
    direct = minilm.embed(TEXTS)
    batching = BatchingEmbedder(minilm, max_batch=32)
    check_concurrent_single_calls(batching, TEXTS, direct)
    print(
        f"{len(TEXTS)} calls -> {batching.stats.batches} batches (mean {batching.stats.mean_batch:.1f})"
    )


def test_a_lone_call_does_not_wait(minilm: LocalEmbedder) -> None:
    batching = BatchingEmbedder(minilm)
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


def test_micro_batcher_serves_every_caller_its_own_rows() -> None:
    calls: list[int] = []

    def slow_double(items: list[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.01)  # long enough for the other threads to queue behind each batch
        return [2 * x for x in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(slow_double, max_batch=8)
    requests = [list(range(i, i + 1 + i % 3)) for i in range(60)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda items: list(batcher(items)), requests))
    assert answers == [[2 * x for x in items] for items in requests]
    assert sum(calls) == sum(len(r) for r in requests) and max(calls) <= 8
    assert len(calls) < len(requests) / 2, calls


def test_a_failing_item_fails_only_its_own_caller() -> None:
    def fail_on_negative(items: list[int]) -> list[int]:
        time.sleep(0.005)  # long enough for the other threads to queue behind each batch
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(fail_on_negative)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(batcher, [i if i % 10 else -1]) for i in range(1, 40)]
        outcomes = [f.exception() or list(f.result()) for f in futures]
    for i, outcome in enumerate(outcomes, start=1):
        assert isinstance(outcome, ValueError) if i % 10 == 0 else outcome == [i], (i, outcome)
    assert batcher.stats.batches < len(futures)  # they were batched, and retried one by one
    assert list(batcher([5])) == [5]  # a failed batch leaves no stuck leader behind


def test_concurrent_forget_index_searches_go_through_the_batcher_exactly(minilm: LocalEmbedder) -> None:
    items = [ForgetItem(f"t/q/{i}", "t", "question", text) for i, text in enumerate(TEXTS[:40])]
    index = ForgetIndex(items, minilm.embed([item.text for item in items]))
    queries = minilm.embed(TEXTS[40:])
    direct = [index._search_rows([row], 3)[0] for row in queries]
    with ThreadPoolExecutor(max_workers=16) as pool:
        hits = list(pool.map(lambda row: index.search(row[None, :], k=3)[0], queries))
    assert hits == direct
    stats = index._batcher(3).stats
    assert stats.texts == len(queries)  # every search went through the batcher
