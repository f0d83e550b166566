"""Test helper: many threads embedding one text each through a batching embedder."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def check_concurrent_single_calls(embedder: Any, texts: list[str], direct: np.ndarray) -> None:
    """32 threads embed one text each: every caller gets its own row (equal to ``direct``), the
    calls meet in batches, and the batches' busy time fits inside the wall time (one batch runs
    at a time)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        rows = list(pool.map(lambda text: embedder.embed([text])[0], texts))
    elapsed = time.perf_counter() - started
    np.testing.assert_allclose(np.stack(rows), direct, atol=1e-5)
    stats = embedder.stats
    assert stats.texts == len(texts)
    assert stats.batches < len(texts) / 2, stats
    assert 0 < stats.busy_s < elapsed
