"""Micro-batching: concurrent ``embed`` calls from many threads become one batched call.

One worker thread owns the model (and pins its torch thread count once). A caller enqueues its
texts and waits on a future; the worker takes the first waiting request, then everything else
already queued (up to ``max_batch`` texts, waiting at most ``max_wait_ms`` for more), embeds
them in one call and hands each caller its rows. With one client nothing waits; under load,
requests that arrive while a batch runs form the next batch, so throughput approaches the
embedder's batched rate.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from filters.embedder import Embedder


@dataclass
class BatchStats:
    """How many batches ran and how many texts they held."""

    batches: int = 0
    texts: int = 0

    @property
    def mean_batch(self) -> float:
        return self.texts / self.batches if self.batches else 0.0


DEFAULT_MAX_BATCH = 64


class BatchingEmbedder:
    """An :class:`Embedder` that coalesces concurrent calls (thread-safe)."""

    def __init__(self, inner: Embedder, *, max_batch: int = DEFAULT_MAX_BATCH, max_wait_ms: float = 0.0) -> None:
        self.inner = inner
        self.model_id = getattr(inner, "model_id", repr(inner))
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.stats = BatchStats()
        self._queue: queue.Queue[tuple[list[str], Future[np.ndarray]]] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._worker.start()

    def warm_up(self) -> None:
        """Load the wrapped model now, if it loads lazily."""
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in the next batch; raises what the inner embedder raised."""
        if not texts:
            return self.inner.embed([])
        future: Future[np.ndarray] = Future()
        self._queue.put((list(texts), future))
        return future.result()

    def _collect(self) -> list[tuple[list[str], Future[np.ndarray]]]:
        pending = [self._queue.get()]
        size = len(pending[0][0])
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            pending.append(item)
            size += len(item[0])
        return pending

    def _run(self) -> None:
        pin_threads = getattr(self.inner, "pin_threads", None)
        if pin_threads is not None:
            pin_threads()
        while True:
            pending = self._collect()
            texts = [text for batch, _ in pending for text in batch]
            try:
                vectors = self.inner.embed(texts)
            except Exception as exc:  # every waiting caller gets the failure
                for _, future in pending:
                    future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.texts += len(texts)
            start = 0
            for batch, future in pending:
                future.set_result(vectors[start : start + len(batch)])
                start += len(batch)

    def __repr__(self) -> str:
        return f"BatchingEmbedder({self.inner!r}, max_batch={self.max_batch})"
