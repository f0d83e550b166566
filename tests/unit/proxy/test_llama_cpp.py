"""The llama.cpp backend's defaults, with the real engine and the embedded model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.backends.llama_cpp import LlamaCppBackend, default_threads
from proxy.core.config import LlamaCppModelConfig


@contextmanager
def _one_cpu() -> Iterator[None]:
    """This thread (and threads it starts) may run on one CPU only, as in a one-CPU cpuset."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def test_default_threads_follow_the_cpus_the_process_may_use() -> None:
    with _one_cpu():
        assert default_threads() == 1
        backend = LlamaCppBackend(LlamaCppModelConfig(backend="llama_cpp"))
    assert backend._llama.n_threads == 1
    configured = LlamaCppBackend(LlamaCppModelConfig(backend="llama_cpp", n_threads=3))
    assert configured._llama.n_threads == 3
