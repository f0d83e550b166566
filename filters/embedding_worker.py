"""The local embedder in a child process, so that embedding never waits on the proxy's GIL.

A torch forward pass of MiniLM hands the GIL back and forth about a hundred times; in a process
whose event loop is busy with requests, every hand-back waits for the loop's thread, and a batch
measured at 56 ms alone took 1.3 s beside one busy Python thread. In a child process the model
has an interpreter to itself. Texts go over a pipe and float32 rows come back; a child that dies
is restarted on the next call, and the failed call raises :class:`EmbedderError` (the policy's
``fail_mode`` decides what that means for the request).
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from filters.embedder import EmbedderError, LocalEmbedder

__all__ = ["ProcessEmbedder"]

START_TIMEOUT_S = 300.0


def _serve(model: str, num_threads: int | None, conn: Connection) -> None:
    """The child's loop: embed what arrives until the pipe closes."""
    embedder = LocalEmbedder(model, num_threads=num_threads)
    try:
        embedder.warm_up()
        embedder.pin_threads()
        conn.send(("ready", embedder.model_id))
    except Exception as exc:  # report any load failure to the parent, then stop
        conn.send(("error", str(exc)))
        return
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        try:
            conn.send(("ok", embedder.embed(texts)))
        except Exception as exc:  # the parent raises it as an EmbedderError
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessEmbedder:
    """A :class:`LocalEmbedder` in a spawned child process; thread-safe, one call at a time."""

    def __init__(self, model: str, *, num_threads: int | None = 1) -> None:
        self.model = model
        self.num_threads = num_threads
        self.model_id = LocalEmbedder(model, num_threads=num_threads).model_id
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: Any = None
        self._exit_hook = False

    def warm_up(self) -> None:
        """Start the child and load the model now (a start failure raises EmbedderError)."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> Connection:
        if self._conn is not None and self._process.is_alive():
            return self._conn
        self._stop()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(self.model, self.num_threads, child),
                                  name="unlearn-proxy-embedder", daemon=True)
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            process.kill()
            raise EmbedderError(f"the embedding worker did not start in {START_TIMEOUT_S:.0f} s")
        status, detail = self._receive(parent)
        if status != "ready":
            process.join(5)
            raise EmbedderError(f"the embedding worker could not load the model: {detail}")
        self._conn, self._process = parent, process
        if not self._exit_hook:  # stop the child before multiprocessing kills daemon children
            atexit.register(self.close)
            self._exit_hook = True
        return parent

    @staticmethod
    def _receive(conn: Connection) -> tuple[str, Any]:
        try:
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            raise EmbedderError(f"the embedding worker exited ({exc or 'no answer'})") from None
        return status, payload

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in the child; raises :class:`EmbedderError` on any failure."""
        with self._lock:
            conn = self._ensure_started()
            try:
                conn.send(list(texts))
                status, payload = self._receive(conn)
            except EmbedderError:
                self._stop()
                raise
            except (BrokenPipeError, OSError) as exc:
                self._stop()
                raise EmbedderError(f"the embedding worker exited ({exc})") from None
        if status != "ok":
            raise EmbedderError(f"embedding failed in the worker: {payload}")
        vectors: np.ndarray = payload
        return vectors

    def close(self) -> None:
        """Stop the child (a later call starts a new one)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn, self._process = None, None

    def __repr__(self) -> str:
        return f"ProcessEmbedder({self.model_id!r}, num_threads={self.num_threads})"
