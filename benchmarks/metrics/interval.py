"""Wilson score interval of a proportion (Wilson 1927), the interval every rate is reported with.

Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
successes: 8 of 10 gives [0.490, 0.943], 0 of 10 gives [0, 0.278].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks.errors import MetricError

__all__ = ["Z_95", "proportion_interval", "wilson_interval"]

Z_95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95 % interval."""


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of ``successes`` out of ``n`` trials.

    Raises ``MetricError`` unless ``0 <= successes <= n`` and ``n > 0``.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise MetricError(f"wilson_interval: need 0 <= successes <= n and n > 0, "
                          f"got {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def proportion_interval(per_item: Sequence[float], *,
                        z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson interval of a rate given as its 0/1 per-item scores, or None when there are
    no items or an item is not 0 or 1 (a mean score such as ROUGE-L is not a proportion)."""
    if not per_item or any(v not in (0.0, 1.0) for v in per_item):
        return None
    return wilson_interval(round(sum(per_item)), len(per_item), z=z)
