"""The embedder in a child process: same vectors as in-process, restarts, clear failures."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from filters.embedder import EmbedderError, LocalEmbedder, build_embedder
from filters.embedding_worker import ProcessEmbedder
from proxy.config import EmbedderConfig

pytestmark = pytest.mark.slow  # each child process loads torch and the model (~10 s)

TEXTS = ["How old is the Moon?", "Where was J. K. Rowling born?", "Best pizza dough"]


def test_the_child_embeds_what_the_local_model_embeds() -> None:
    worker = ProcessEmbedder("all-MiniLM-L6-v2")
    try:
        vectors = worker.embed(TEXTS)
        assert worker._process.pid != os.getpid()
        np.testing.assert_allclose(vectors, LocalEmbedder().embed(TEXTS), atol=1e-5)
        assert worker.embed([]).shape == (0, 384)
        first = worker._process
        first.kill()  # a child found dead is replaced before the call
        first.join()
        np.testing.assert_allclose(worker.embed(TEXTS), vectors, atol=1e-6)
        assert worker._process is not first
        threading.Timer(1.0, worker._process.kill).start()  # dies during a long call:
        with pytest.raises(EmbedderError, match="worker exited"):  # that call fails ...
            worker.embed([f"sentence number {i}" for i in range(20000)])
        np.testing.assert_allclose(worker.embed(TEXTS), vectors, atol=1e-6)  # ... the next works
    finally:
        worker.close()
    assert worker._process is None


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    worker = ProcessEmbedder(str(tmp_path))
    with pytest.raises(EmbedderError, match="could not load the model"):
        worker.warm_up()


def test_policies_embed_in_a_child_process_by_default() -> None:
    shared = build_embedder(EmbedderConfig())
    assert isinstance(shared.inner.inner, ProcessEmbedder)  # cache -> batcher -> worker
    threaded = build_embedder(EmbedderConfig(worker="thread"))
    assert isinstance(threaded.inner.inner, LocalEmbedder)
    np.testing.assert_allclose(shared.embed(TEXTS), threaded.embed(TEXTS), atol=1e-5)
