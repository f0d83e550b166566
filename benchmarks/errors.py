"""Errors raised by the benchmark harness.

Hierarchy::

    BenchmarkError            base class of every harness error
     ├── DatasetError         a data file or directory is missing, unreadable or malformed,
     │                        or a loader argument names data that does not exist
     └── MetricError          metric inputs are inconsistent (length mismatch, bad values)
"""

from __future__ import annotations

__all__ = ["BenchmarkError", "DatasetError", "MetricError"]


class BenchmarkError(Exception):
    """Base class of the errors raised by ``benchmarks``."""


class DatasetError(BenchmarkError):
    """A benchmark data file is missing or malformed; the message names the file."""


class MetricError(BenchmarkError, ValueError):
    """Metric inputs are inconsistent (mismatched lengths, out-of-range values)."""
