"""Benchmark loaders: TOFU, RWKU, WMDP and MUSE as plain ``Benchmark`` objects.

``DATASETS`` maps a YAML ``type:`` alias to a loader (imported on first use);
``load_benchmark("tofu", split="forget10")`` resolves and calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from benchmarks.datasets.base import Benchmark, ForgetTarget, Probe, ProbeKind
from proxy.core.registry import Registry

__all__ = ["DATASETS", "Benchmark", "DatasetLoader", "ForgetTarget", "Probe", "ProbeKind",
           "load_benchmark"]


DatasetLoader = Callable[..., Benchmark]
"""A ``load_<name>(data_dir=None, *, ..., limit=None, seed=0) -> Benchmark`` function."""


DATASETS: Registry[DatasetLoader] = Registry("dataset")
DATASETS.register("tofu", "benchmarks.datasets.tofu:load_tofu")
DATASETS.register("rwku", "benchmarks.datasets.rwku:load_rwku")
DATASETS.register("wmdp", "benchmarks.datasets.wmdp:load_wmdp")
DATASETS.register("muse", "benchmarks.datasets.muse:load_muse")


def load_benchmark(name: str, data_dir: str | os.PathLike[str] | None = None,
                   **kwargs: Any) -> Benchmark:
    """Load the benchmark registered as ``name``; ``kwargs`` go to its loader."""
    return DATASETS.get(name)(data_dir, **kwargs)
