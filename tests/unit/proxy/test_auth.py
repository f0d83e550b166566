"""The rate limiter's window and its bounded memory (a scripted clock stands in for time)."""

from __future__ import annotations

import pytest

from proxy.auth import RateLimiter
from proxy.core.errors import RateLimitError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_slides_per_identity() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limiter.check("a", 2)
    clock.now += 10
    limiter.check("a", 2)
    limiter.check("b", 2)  # another identity has its own window
    with pytest.raises(RateLimitError) as info:
        limiter.check("a", 2)
    assert info.value.headers == {"retry-after": "50"}  # the first hit leaves at 60 s
    clock.now += 50
    limiter.check("a", 2)  # the first hit left the window
    with pytest.raises(RateLimitError):
        limiter.check("a", 2)
    limiter.check("a", 3)  # a raised limit applies to the window counted so far
    with pytest.raises(RateLimitError, match="rate limit of 3 "):
        limiter.check("a", 3)


def test_idle_windows_are_dropped() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for i in range(1000):
        limiter.check(f"client-{i}", 5)
    assert len(limiter) == 1000
    clock.now += 59
    limiter.check("recent", 5)
    assert len(limiter) == 1001  # nothing is a minute old yet
    clock.now += 1
    limiter.check("late", 5)
    assert len(limiter) == 2  # "recent" and "late" are within the last minute


def test_no_limit_counts_nothing() -> None:
    limiter = RateLimiter()
    for _ in range(100):
        limiter.check("a", None)
    assert len(limiter) == 0
