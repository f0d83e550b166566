"""Micro-batching: concurrent calls from many threads become one batched call.

Leader/follower: a call that finds no batch running runs one itself, in its own thread, over
its items and those of every call already waiting (up to ``max_batch`` items); calls that arrive
meanwhile wait, and the oldest of them leads the next batch with everything queued by then. A
lone call runs at once, with no hand-off to another thread; under load, calls that arrive while
a batch runs form the next one, so throughput approaches the batched rate. A batch that fails
is retried call by call (:func:`run_groups`), so one caller's bad item fails only that caller.
The FAISS forget
index and the in-thread and remote embedders batch this way; the embedding child process
(:mod:`filters.embedding_worker`) batches on its own side of the pipe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    from filters.embedder import Embedder

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_BATCH = 64


@dataclass
class BatchStats:
    """How many batches ran, how many items they held, and the seconds spent running them."""

    batches: int = 0
    texts: int = 0
    busy_s: float = 0.0

    @property
    def mean_batch(self) -> float:
        return self.texts / self.batches if self.batches else 0.0


class Unavailable(Exception):
    """Raised by a batched function whose service is down (timed out, unreachable, exited): no
    item is to blame, so the batch is not retried group by group."""


def run_groups(
    fn: Callable[[list[T]], Sequence[R]], groups: Sequence[list[T]]
) -> list[Sequence[R] | Exception]:
    """``fn`` over the items of all ``groups`` in one call, its rows split back per group. When
    that call raises, ``fn`` runs over each group alone: an item that fails fails only its own
    group (that group's entry is the exception), never the others batched with it. An
    :class:`Unavailable` service fails every group at once (retrying would wait on it again)."""
    try:
        rows = fn([item for group in groups for item in group])
    except Exception as exc:
        if len(groups) == 1 or isinstance(exc, Unavailable):
            return [exc] * len(groups)
        return [_alone(fn, group) for group in groups]
    out: list[Sequence[R] | Exception] = []
    start = 0
    for group in groups:
        out.append(rows[start : start + len(group)])
        start += len(group)
    return out


def _alone(fn: Callable[[list[T]], Sequence[R]], group: list[T]) -> Sequence[R] | Exception:
    try:
        return fn(group)
    except Exception as exc:
        return exc


class _Call(Generic[T, R]):
    """One caller's items, its share of a batch's result, and the lock it sleeps on."""

    __slots__ = ("items", "rows", "error", "_wake")

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.rows: Sequence[R] | None = None
        self.error: BaseException | None = None
        self._wake = threading.Lock()
        self._wake.acquire()

    @property
    def served(self) -> bool:
        return self.rows is not None or self.error is not None

    def sleep(self) -> None:
        self._wake.acquire()

    def wake(self) -> None:
        self._wake.release()


class MicroBatcher(Generic[T, R]):
    """``fn`` over a list of items, with concurrent calls coalesced into one (thread-safe).

    ``fn`` must return one row per item, in order, as a sliceable sequence (a list, an array).
    """

    def __init__(
        self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._lock = threading.Lock()
        self._waiting: deque[_Call[T, R]] = deque()  # the head leads the next batch
        self._running = False

    def __call__(self, items: Sequence[T]) -> Sequence[R]:
        """``fn(items)``, possibly computed together with other callers' items."""
        call: _Call[T, R] = _Call(list(items))
        with self._lock:
            self._waiting.append(call)
            lead, self._running = not self._running, True
        if not lead:
            call.sleep()  # until served, or until this call leads the next batch
        if not call.served:
            self._run_batch()
        if call.error is not None:
            raise call.error
        assert call.rows is not None
        return call.rows

    def _run_batch(self) -> None:
        with self._lock:
            batch = [self._waiting.popleft()]
            size = len(batch[0].items)
            while self._waiting and size + len(self._waiting[0].items) <= self.max_batch:
                batch.append(self._waiting.popleft())
                size += len(batch[-1].items)
        started = time.perf_counter()
        results: list[Sequence[R] | BaseException]
        try:
            results = list(run_groups(self.fn, [call.items for call in batch]))
        except BaseException as exc:  # an interrupt, not a failing item: every caller gets it
            results = [exc] * len(batch)
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                call.error = result
            else:
                call.rows = result
                self.stats.texts += len(call.items)
        self.stats.batches += any(call.rows is not None for call in batch)
        self.stats.busy_s += time.perf_counter() - started
        with self._lock:
            leader = self._waiting[0] if self._waiting else None
            self._running = leader is not None
        for call in batch[1:]:
            call.wake()
        if leader is not None:
            leader.wake()


class BatchingEmbedder:
    """An :class:`Embedder` that coalesces concurrent calls (thread-safe)."""

    def __init__(self, inner: Embedder, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.inner = inner
        self.model_id = getattr(inner, "model_id", repr(inner))
        self._batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(inner.embed, max_batch=max_batch)

    @property
    def stats(self) -> BatchStats:
        return self._batcher.stats

    def warm_up(self) -> None:
        """Load the wrapped model now, if it loads lazily."""
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in the next batch; raises what the inner embedder raised."""
        if not texts:
            return self.inner.embed([])
        return np.asarray(self._batcher(texts))

    def __repr__(self) -> str:
        return f"BatchingEmbedder({self.inner!r}, max_batch={self._batcher.max_batch})"
