"""The forget set as embedded items in a FAISS inner-product index.

Items are a target's name, aliases and description, its example questions and answers, and
its documents cut into sentence windows of at most ``max_words`` words with one sentence of
overlap. Every item keeps its target id, kind and text, so each decision names what it matched
(embedding forget-target detection as in Liu et al. 2024, *ECO*, and Thaker et al. 2024).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from filters.batching import MicroBatcher
from filters.embedder import Embedder
from proxy.core.config import ForgetTargetConfig, resolve_document

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n?")

# A guard searches with one or two queries at a time: a single thread answers in microseconds,
# while an OpenMP pool spin-waiting on a CPU shared with generation takes tens of milliseconds.
faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class ForgetItem:
    """One embedded piece of the forget set."""

    id: str
    target_id: str
    kind: str
    text: str


def _sentences(text: str, max_words: int) -> list[list[str]]:
    """Sentences as word lists; a sentence longer than ``max_words`` is cut into pieces."""
    out: list[list[str]] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        for start in range(0, len(words), max_words):
            out.append(words[start : start + max_words])
    return [s for s in out if s]


def chunk_text(text: str, *, max_words: int = 60) -> list[str]:
    """Sentence windows of at most ``max_words`` words; consecutive windows share a sentence."""
    sentences = _sentences(text, max_words)
    chunks: list[str] = []
    start = 0
    while start < len(sentences):
        end, words = start, 0
        while end < len(sentences) and (end == start or words + len(sentences[end]) <= max_words):
            words += len(sentences[end])
            end += 1
        chunks.append(" ".join(w for s in sentences[start:end] for w in s))
        if end >= len(sentences):
            break
        start = end - 1 if end - 1 > start else end
    return chunks


def collect_items(
    targets: Iterable[ForgetTargetConfig], *, base_dir: Path, max_words: int = 60
) -> list[ForgetItem]:
    """Every forget item of ``targets``, without duplicates within a target."""
    items: list[ForgetItem] = []
    for target in targets:
        texts: list[tuple[str, str]] = [("name", n) for n in target.names]
        if target.description:
            texts.append(("description", target.description))
        for qa in target.questions:
            texts.append(("question", qa.question))
            if qa.answer:
                texts.append(("answer", qa.answer))
        for doc in target.documents:
            texts += [
                ("chunk", c)
                for c in chunk_text(resolve_document(doc, base_dir), max_words=max_words)
            ]
        seen: set[str] = set()
        for kind, text in texts:
            if text.strip() and text not in seen:
                seen.add(text)
                items.append(ForgetItem(f"{target.id}/{kind}/{len(seen)}", target.id, kind, text))
    return items


Hits = list[tuple[float, ForgetItem]]


IndexKind = Literal["auto", "flat", "hnsw"]
# Below this many items an exact search (IndexFlatIP) takes at most a few milliseconds per query
# on one thread; above it, a graph (IndexHNSWFlat) answers in a fraction of a millisecond with
# top-1 recall >= 0.99 against the exact search (benchmarks/scaling.py checks it).
HNSW_MIN_ITEMS = 50_000
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
HNSW_FILE = "hnsw.faiss"


def _faiss_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    index: faiss.Index
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


class ForgetIndex:
    """Forget items and their embeddings in a FAISS inner-product index (cosine similarity):
    exact (``IndexFlatIP``) up to :data:`HNSW_MIN_ITEMS` items, an HNSW graph above (``kind``
    forces one).

    Searches from concurrent requests are batched into one FAISS call (:class:`MicroBatcher`).
    """

    def __init__(
        self, items: Sequence[ForgetItem], vectors: np.ndarray, *, kind: IndexKind = "auto",
        faiss_index: faiss.Index | None = None,
    ) -> None:
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        self.items = list(items)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if kind == "auto":
            kind = "hnsw" if len(self.items) >= HNSW_MIN_ITEMS else "flat"
        self.kind = kind
        if faiss_index is not None and faiss_index.ntotal != len(self.items):
            faiss_index = None  # not this index's graph: build it anew
        self._index = faiss_index if faiss_index is not None else _faiss_index(self.vectors, kind)
        self._batchers: dict[int, MicroBatcher[np.ndarray, Hits]] = {}
        self._batchers_lock = threading.Lock()

    @classmethod
    def build(
        cls,
        items: Sequence[ForgetItem],
        embedder: Embedder,
        *,
        batch_size: int = 256,
        progress: bool = False,
    ) -> ForgetIndex:
        """Embed ``items`` in batches (with a progress bar when ``progress``)."""
        from tqdm import tqdm

        texts = [item.text for item in items]
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        bar = tqdm(batches, desc="embedding forget items", unit="batch", disable=not progress)
        parts = [embedder.embed(batch) for batch in bar]
        vectors = np.concatenate(parts) if parts else embedder.embed([])
        return cls(items, vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, vectors: np.ndarray, k: int = 1) -> list[Hits]:
        """The ``k`` nearest items of each query row, best first, as ``(cosine, item)``."""
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(self.items) or not len(queries):
            return [[] for _ in range(len(queries))]
        return list(self._batcher(min(k, len(self.items)))(list(queries)))

    def _batcher(self, k: int) -> MicroBatcher[np.ndarray, Hits]:
        batcher = self._batchers.get(k)
        if batcher is None:  # first search with this k
            with self._batchers_lock:
                batcher = self._batchers.setdefault(
                    k, MicroBatcher(lambda rows: self._search_rows(rows, k))
                )
        return batcher

    def _search_rows(self, rows: list[np.ndarray], k: int) -> list[Hits]:
        scores, ids = self._index.search(np.stack(rows), k)
        return [
            [(float(s), self.items[int(i)]) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def save(self, directory: Path) -> None:
        """Write ``items.json`` and ``vectors.npy`` into ``directory`` (and an HNSW index's
        graph, so a load does not build it again)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "items.json").write_text(json.dumps([asdict(i) for i in self.items]), "utf-8")
        np.save(directory / "vectors.npy", self.vectors)
        if self.kind == "hnsw":
            faiss.write_index(self._index, str(directory / HNSW_FILE))

    @classmethod
    def load(cls, directory: Path) -> ForgetIndex:
        """Read an index written by :meth:`save`."""
        items = [
            ForgetItem(**row) for row in json.loads((directory / "items.json").read_text("utf-8"))
        ]
        graph = directory / HNSW_FILE
        stored = faiss.read_index(str(graph)) if graph.is_file() else None
        if stored is not None:
            stored.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(items, np.load(directory / "vectors.npy"),
                   kind="hnsw" if stored is not None else "auto", faiss_index=stored)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ForgetIndex({len(self.items)} items, dim={self.vectors.shape[1]}, {self.kind})"
