"""``benchmarks.overhead_ab``: added latency per round, and the head/base ratio."""

from __future__ import annotations

from benchmarks.overhead_ab import _summary


def test_added_latency_is_per_round_and_the_ratio_compares_medians() -> None:
    times = {"direct": [1.0, 2.0, 3.0], "base": [2.0, 4.0, 5.0], "head": [3.0, 4.0, 7.0]}
    summary = _summary(times)
    assert (summary["base_added_50_ms"], summary["head_added_50_ms"]) == (2.0, 2.0)
    assert summary["head_added_99_ms"] == 3.96
    assert summary["head_over_base_p50"] == 1.0
    assert _summary({"direct": [1.0], "base": [1.0], "head": [2.0]})["head_over_base_p50"] is None
