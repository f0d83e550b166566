"""The embedder in a child process: same vectors as in-process, restarts, clear failures."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from filters.embedder import EmbedderError, build_embedder, local_embedder
from filters.embedding_worker import ProcessEmbedder
from filters.onnx_embedder import OnnxEmbedder
from proxy.core.config import EmbedderConfig
from tests.batching import check_concurrent_single_calls

pytestmark = pytest.mark.slow  # each child process loads the model (~2 s; torch ~10 s)

TEXTS = ["How old is the Moon?", "Where was J. K. Rowling born?", "Best pizza dough"]


def _kill(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_the_child_embeds_what_the_local_model_embeds() -> None:
    worker = ProcessEmbedder("all-MiniLM-L6-v2")
    try:
        vectors = worker.embed(TEXTS)
        first = worker.pid
        assert first is not None and first != os.getpid()
        np.testing.assert_allclose(vectors, local_embedder().embed(TEXTS), atol=1e-5)
        assert worker.embed([]).shape == (0, 384)
        _kill(first)  # a child found dead is replaced before the call
        time.sleep(0.5)
        np.testing.assert_allclose(worker.embed(TEXTS), vectors, atol=1e-6)
        assert worker.pid != first
        threading.Timer(1.0, _kill, [worker.pid]).start()  # dies during a long call:
        with pytest.raises(EmbedderError, match="worker exited"):  # that call fails ...
            worker.embed([f"sentence number {i}" for i in range(20000)])
        np.testing.assert_allclose(worker.embed(TEXTS), vectors, atol=1e-6)  # ... the next works
    finally:
        worker.close()
    assert worker.pid is None


def test_the_child_batches_concurrent_calls_and_answers_each_its_own() -> None:
    texts = [f"Question {i} about topic {i % 5}?" for i in range(64)]
    worker = ProcessEmbedder("all-MiniLM-L6-v2", max_batch=16)
    try:
        direct = local_embedder().embed(texts)
        worker.warm_up()
        check_concurrent_single_calls(worker, texts, direct)  # busy = the child's forward passes
    finally:
        worker.close()


def test_a_text_the_tokenizer_rejects_fails_only_its_own_call() -> None:
    worker = ProcessEmbedder("all-MiniLM-L6-v2")
    try:
        worker.warm_up()
        with ThreadPoolExecutor(max_workers=8) as pool:
            busy = pool.submit(worker.embed, [f"sentence number {i}" for i in range(3000)])
            time.sleep(0.3)  # the calls below queue up behind it and form one batch
            bad = pool.submit(worker.embed, ["hi \udfff"])  # a lone surrogate
            good = [pool.submit(worker.embed, [text]) for text in TEXTS]
            assert busy.result().shape == (3000, 384)
            with pytest.raises(EmbedderError, match="embedding failed"):
                bad.result()
            rows = np.concatenate([future.result() for future in good])
        np.testing.assert_allclose(rows, local_embedder().embed(TEXTS), atol=1e-5)
    finally:
        worker.close()


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    worker = ProcessEmbedder(str(tmp_path))
    with pytest.raises(EmbedderError, match="could not load the model"):
        worker.warm_up()


def test_policies_embed_in_a_child_process_by_default() -> None:
    shared = build_embedder(EmbedderConfig())
    assert isinstance(shared.inner.inner, ProcessEmbedder)  # cache -> breaker -> worker
    threaded = build_embedder(EmbedderConfig(worker="thread"))
    assert isinstance(threaded.inner.inner.inner, OnnxEmbedder)  # ... -> batcher -> model
    assert shared.inner.inner.engine == "onnx"
    np.testing.assert_allclose(shared.embed(TEXTS), threaded.embed(TEXTS), atol=1e-5)
