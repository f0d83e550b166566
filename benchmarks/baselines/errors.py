"""Errors raised by the weight-based baselines.

Hierarchy::

    BenchmarkError (benchmarks.errors)
     └── BaselineError
          ├── BaselineConfigError (also ValueError)  bad hyper-parameters, wrong config, bad mix α
          └── BaselineDataError (also ValueError)    bad forget/retain data, states or checkpoints
"""

from __future__ import annotations

from benchmarks.errors import BenchmarkError


class BaselineError(BenchmarkError):
    """Base class of every error raised by ``benchmarks.baselines``."""


class BaselineConfigError(BaselineError, ValueError):
    """A configuration value is out of range or inconsistent with the method."""


class BaselineDataError(BaselineError, ValueError):
    """Forget/retain data or a checkpoint cannot be used."""
