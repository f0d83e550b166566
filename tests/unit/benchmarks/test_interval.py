"""The Wilson score interval against reference values (scipy's
``binomtest(k, n).proportion_ci(method="wilson")``, checked once by hand), and its edge cases."""

from __future__ import annotations

import pytest

from benchmarks.errors import MetricError
from benchmarks.metrics.interval import proportion_interval, wilson_interval


@pytest.mark.parametrize(("successes", "n", "expected"), [
    (8, 10, (0.4902, 0.9433)),
    (50, 100, (0.4038, 0.5962)),
    (0, 10, (0.0, 0.2775)),  # z² / (n + z²) = 3.8415 / 13.8415
    (10, 10, (0.7225, 1.0)),
    (1, 1, (0.2065, 1.0)),
    (3, 40, (0.0258, 0.1986)),
])
def test_wilson_interval_known_values(successes: int, n: int,
                                      expected: tuple[float, float]) -> None:
    assert wilson_interval(successes, n) == pytest.approx(expected, abs=5e-5)


def test_wilson_interval_is_symmetric_and_narrows_with_n() -> None:
    low, high = wilson_interval(3, 10)
    assert wilson_interval(7, 10) == pytest.approx((1 - high, 1 - low))
    small, large = wilson_interval(8, 10), wilson_interval(80, 100)
    assert small[0] < large[0] < 0.8 < large[1] < small[1]


def test_wilson_interval_z_widens() -> None:
    narrow, wide = wilson_interval(8, 10, z=1.0), wilson_interval(8, 10)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


@pytest.mark.parametrize(("successes", "n"), [(0, 0), (-1, 10), (11, 10)])
def test_wilson_interval_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(MetricError, match="successes"):
        wilson_interval(successes, n)


@pytest.mark.parametrize(("per_item", "expected"), [
    ([1.0] * 8 + [0.0] * 2, (0.4902, 0.9433)),
    ([0.0, 0.0, 0.0], (0.0, 0.5615)),
])
def test_proportion_interval_of_binary_items(per_item: list[float],
                                             expected: tuple[float, float]) -> None:
    assert proportion_interval(per_item) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("per_item", [[], [1.0, 0.5], [0.25]])
def test_proportion_interval_needs_a_proportion(per_item: list[float]) -> None:
    assert proportion_interval(per_item) is None
