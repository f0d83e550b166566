"""The result type every metric returns, and small shared checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from benchmarks.errors import MetricError

__all__ = ["MetricResult", "Tier", "check_lengths", "mean"]

Tier = Literal["T", "L", "W"]
_TIERS = ("T", "L", "W")


@dataclass(frozen=True)
class MetricResult:
    """A metric's aggregate ``value``, its ``per_item`` scores, its tier (T: text only,
    L: log-probs, W: weights) and direction."""

    value: float
    per_item: list[float]
    tier: Tier
    higher_is_better: bool
    name: str

    def __post_init__(self) -> None:
        if self.tier not in _TIERS:
            raise MetricError(f"{self.name}: tier must be one of {_TIERS}, not {self.tier!r}")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)

    def __repr__(self) -> str:
        return (f"MetricResult({self.name}={self.value:.4f}, n={len(self.per_item)}, "
                f"tier={self.tier}, higher_is_better={self.higher_is_better})")


def check_lengths(name: str, **sequences: Sequence[object]) -> int:
    """The common length of ``sequences``; raises ``MetricError`` if they differ or are empty."""
    lengths = {key: len(value) for key, value in sequences.items()}
    if len(set(lengths.values())) != 1:
        raise MetricError(f"{name}: inputs differ in length ({lengths})")
    (length,) = set(lengths.values())
    if length == 0:
        raise MetricError(f"{name}: no items")
    return length


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (``nan`` for no values)."""
    return math.fsum(values) / len(values) if values else math.nan
