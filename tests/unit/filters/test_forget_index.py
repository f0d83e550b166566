from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filters.embedder import Embedder, LocalEmbedder
from filters.forget_index import ForgetIndex, ForgetItem, chunk_text, collect_items
from proxy.core.config import ForgetTargetConfig

DOC = " ".join(
    f"Sentence number {i} talks about the lighthouse keeper of Brindle Cove." for i in range(30)
)


def test_chunks_are_bounded_and_overlap() -> None:
    chunks = chunk_text(DOC, max_words=60)
    assert len(chunks) > 3
    assert all(len(c.split()) <= 60 for c in chunks)
    for left, right in zip(chunks, chunks[1:], strict=False):
        last_sentence = left.split(". ")[-1]
        assert right.startswith(last_sentence.rstrip(".")), (left, right)
    assert "Sentence number 29" in chunks[-1]


def test_long_sentence_is_cut() -> None:
    chunks = chunk_text("word " * 150, max_words=60)
    assert [len(c.split()) for c in chunks] == [60, 60, 30]


def test_collect_items_kinds_and_ids(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text(DOC, encoding="utf-8")
    target = ForgetTargetConfig.model_validate(
        {
            "id": "keeper",
            "name": "Ada Brindle",
            "aliases": ["The Keeper"],
            "description": "A lighthouse keeper.",
            "documents": [{"path": "doc.txt"}],
            "questions": [{"question": "Who keeps the lighthouse?", "answer": "Ada Brindle does."}],
        }
    )
    items = collect_items([target], base_dir=tmp_path)
    kinds = [i.kind for i in items]
    assert kinds[:5] == ["name", "name", "description", "question", "answer"]
    assert kinds.count("chunk") == len(chunk_text(DOC))
    assert len({i.id for i in items}) == len(items)
    assert all(i.target_id == "keeper" for i in items)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return LocalEmbedder()


def test_search_finds_the_paraphrased_item(embedder: Embedder, tmp_path: Path) -> None:
    targets = [
        ForgetTargetConfig(id="a", name="Ada Brindle", questions=["Where was Ada Brindle born?"]),
        ForgetTargetConfig(
            id="b", name="Tom Quill", questions=["What instrument does Tom Quill play?"]
        ),
    ]
    index = ForgetIndex.build(collect_items(targets, base_dir=tmp_path), embedder)
    queries = embedder.embed(
        ["Which instrument is played by Tom Quill?", "Ada Brindle's birthplace?"]
    )
    hits = index.search(queries, k=2)
    assert [row[0][1].target_id for row in hits] == ["b", "a"]
    assert all(row[0][0] >= row[1][0] for row in hits)
    index.save(tmp_path / "idx")
    loaded = ForgetIndex.load(tmp_path / "idx")
    assert loaded.items == index.items
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    assert [r[0][1] for r in loaded.search(queries)] == [r[0][1] for r in hits]


def test_empty_index_searches_to_nothing(embedder: Embedder) -> None:
    index = ForgetIndex([], embedder.embed([]))
    assert index.search(embedder.embed(["anything"])) == [[]]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_an_hnsw_index_finds_what_the_exact_search_finds(tmp_path: Path) -> None:
    """Clustered vectors (targets whose items resemble each other): the graph's top hit is the
    exact search's for at least 99 % of queries near an item, and it survives a save."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(100, 384))
    vectors = _unit(centres[rng.integers(0, 100, 10_000)] + 0.4 * rng.normal(size=(10_000, 384)))
    items = [ForgetItem(f"t{i}/chunk/1", f"t{i}", "chunk", f"text {i}") for i in range(10_000)]
    flat, graph = ForgetIndex(items, vectors, kind="flat"), ForgetIndex(items, vectors, kind="hnsw")
    queries = _unit(vectors[rng.choice(10_000, 400)] + 0.03 * rng.normal(size=(400, 384)))
    exact = [hits[0][1] for hits in flat.search(queries)]
    found = [hits[0][1] for hits in graph.search(queries)]
    assert np.mean([a == b for a, b in zip(exact, found, strict=True)]) >= 0.99
    graph.save(tmp_path)
    loaded = ForgetIndex.load(tmp_path)
    assert loaded.kind == "hnsw" and [h[0][1] for h in loaded.search(queries)] == found
    assert (ForgetIndex(items[:10], vectors[:10]).kind, flat.kind) == ("flat", "flat")
