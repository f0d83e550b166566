"""The local embedder in a child process, which also does the micro-batching.

The child runs ONNX Runtime (the default engine; it never imports torch, see
:mod:`filters.onnx_embedder`) or torch. A torch forward pass of MiniLM hands the GIL back and
forth about a hundred times; in a process whose event loop is busy with requests, every
hand-back waits for the loop's thread, and a batch measured at 56 ms alone took 1.3 s beside one
busy Python thread. In a child process the model has an interpreter to itself.

Callers send their texts as they come; the child embeds everything waiting in its pipe (up to
``max_batch`` texts) in one call, so it starts the next batch the moment one ends instead of
waiting for the busy parent to form it. A reader thread in the parent hands each caller its
rows; a batch that fails is retried call by call, so only the call with the bad text fails.
A child that dies is restarted on the next call; the calls it owed fail with
:class:`EmbedderError` (the policy's ``fail_mode`` decides what that means for the request).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from filters.batching import DEFAULT_MAX_BATCH, BatchStats, run_groups
from filters.embedder import (
    EmbedderError, EmbedderUnavailable, LocalEmbedder, local_embedder, local_model_id,
)
from proxy.core.config import EmbedderEngine, EmbedderPrecision
from proxy.core.errors import ConfigError

__all__ = ["ProcessEmbedder"]

START_TIMEOUT_S = 300.0


def _release_freed_heap() -> None:
    """Hand the heap a model load freed back to the OS (glibc keeps it otherwise: ~35 MB of
    the ONNX model's parse buffers); a no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _serve(model: str, engine: EmbedderEngine, precision: EmbedderPrecision,
           num_threads: int | None, max_batch: int, conn: Connection) -> None:
    """The child's loop: embed what is waiting, in one batch, until the pipe closes."""
    if num_threads is not None:  # the tokenizer's batch encoding keeps to the same count
        os.environ["RAYON_NUM_THREADS"] = str(num_threads)
    try:
        embedder = local_embedder(model, engine=engine, precision=precision,
                                  num_threads=num_threads)
        embedder.warm_up()
        if isinstance(embedder, LocalEmbedder):
            embedder.pin_threads()
        _release_freed_heap()
        conn.send(("ready", embedder.model_id))
    except Exception as exc:  # report any load failure to the parent, then stop
        conn.send(("error", str(exc)))
        return
    while True:
        try:
            calls: list[tuple[int, list[str]]] = [conn.recv()]
            size = len(calls[0][1])
            while size < max_batch and conn.poll():
                calls.append(conn.recv())
                size += len(calls[-1][1])
        except (EOFError, OSError):  # the parent is gone
            return
        started = time.perf_counter()
        results = run_groups(embedder.embed, [texts for _, texts in calls])  # a failure: only its call
        answers = [
            (call_id, "error", f"{type(result).__name__}: {result}") if isinstance(result, Exception)
            else (call_id, "ok", result)
            for (call_id, _), result in zip(calls, results, strict=True)
        ]
        conn.send((time.perf_counter() - started, answers))


class _Child:
    """One running worker process, its pipe, the calls it owes, and the thread reading answers."""

    def __init__(self, embedder: ProcessEmbedder, stats: BatchStats) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process: Any = context.Process(
            target=_serve, args=(embedder.model, embedder.engine, embedder.precision,
                                 embedder.num_threads, embedder.max_batch, child_end),
            name="unlearn-proxy-embedder", daemon=True,
        )
        self.process.start()
        child_end.close()
        try:
            status, detail = self._handshake()
        except EmbedderError:
            self.process.kill()
            self.process.join()
            self.conn.close()
            raise
        if status != "ready":
            self.process.join(5)
            self.conn.close()
            raise EmbedderError(f"the embedding worker could not load the model: {detail}")
        self.stats = stats
        self.pending: dict[int, Future[np.ndarray]] = {}
        self.closed = False
        self._lock = threading.Lock()  # sending, and the pending calls
        self.reader = threading.Thread(target=self._read, name="embed-reader", daemon=True)
        self.reader.start()

    def _handshake(self) -> tuple[str, str]:
        if not self.conn.poll(START_TIMEOUT_S):
            raise EmbedderUnavailable(f"the embedding worker did not start in {START_TIMEOUT_S:.0f} s")
        try:
            status, detail = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise EmbedderUnavailable(f"the embedding worker exited ({exc or 'no answer'})") from None
        return str(status), str(detail)

    @property
    def alive(self) -> bool:
        return not self.closed and bool(self.process.is_alive())

    def submit(self, call_id: int, texts: list[str]) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        with self._lock:
            if self.closed:
                raise EmbedderUnavailable("the embedding worker exited")
            self.pending[call_id] = future
            try:
                self.conn.send((call_id, texts))
            except (OSError, ValueError) as exc:  # a broken pipe, or a closed handle
                del self.pending[call_id]
                raise EmbedderUnavailable(f"the embedding worker exited ({exc})") from None
        return future

    def _read(self) -> None:
        why = "no answer"
        while True:
            try:
                busy_s, answers = self.conn.recv()
            except (EOFError, OSError) as exc:
                why = str(exc) or why
                break
            self.stats.batches += 1
            self.stats.busy_s += busy_s
            with self._lock:
                owed = [(self.pending.pop(i, None), status, payload) for i, status, payload in answers]
            for future, status, payload in owed:
                if future is None:
                    continue
                if status == "ok":
                    self.stats.texts += len(payload)
                    future.set_result(payload)
                else:
                    future.set_exception(EmbedderError(f"embedding failed in the worker: {payload}"))
        with self._lock:
            self.closed = True
            owed_futures = list(self.pending.values())
            self.pending.clear()
        for future in owed_futures:
            future.set_exception(EmbedderUnavailable(f"the embedding worker exited ({why})"))

    def stop(self) -> None:
        """End the process; the reader then sees the pipe close and fails what is owed."""
        self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.reader.join(5)
        self.conn.close()


class ProcessEmbedder:
    """A local embedder (:func:`~filters.embedder.local_embedder`: ONNX Runtime by default, or
    torch) in a spawned child process that batches concurrent calls."""

    def __init__(
        self, model: str, *, engine: EmbedderEngine = "onnx", precision: EmbedderPrecision = "fp32",
        num_threads: int | None = 1, max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if engine == "torch" and precision != "fp32":
            raise ConfigError("embedder.precision: the torch engine runs fp32 only")
        self.model = model
        self.engine: EmbedderEngine = engine
        self.precision: EmbedderPrecision = precision
        self.num_threads = num_threads
        self.max_batch = max_batch
        self.model_id = local_model_id(model, precision=precision)
        self.stats = BatchStats()
        self._ids = itertools.count()
        self._lock = threading.Lock()  # starting and stopping the child
        self._child: _Child | None = None
        self._exit_hook = False

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        return int(self._child.process.pid) if self._child is not None else None

    def warm_up(self) -> None:
        """Start the child and load the model now (a start failure raises EmbedderError)."""
        self._running()

    def _running(self) -> _Child:
        with self._lock:
            if self._child is not None and self._child.alive:
                return self._child
            if self._child is not None:  # found dead: replace it
                self._child.stop()
                self._child = None
            self._child = _Child(self, self.stats)
            if not self._exit_hook:  # stop the child before multiprocessing kills daemon children
                atexit.register(self.close)
                self._exit_hook = True
            return self._child

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in the child's next batch; raises :class:`EmbedderError` on any failure."""
        vectors: np.ndarray = self._running().submit(next(self._ids), list(texts)).result()
        return vectors

    def close(self) -> None:
        """Stop the child (a later call starts a new one)."""
        with self._lock:
            if self._child is not None:
                self._child.stop()
                self._child = None

    def __repr__(self) -> str:
        return (f"ProcessEmbedder({self.model_id!r}, engine={self.engine!r}, "
                f"num_threads={self.num_threads})")
