"""The circuit breaker: outages open it, input failures do not, one trial after the cooldown."""

from __future__ import annotations

import pytest

from filters.batching import Unavailable, run_groups
from filters.circuit import CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_consecutive_outages_open_it_and_a_success_resets_the_count(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10.0, clock=clock)
    for _ in range(2):
        breaker.admit()
        breaker.failed(Unavailable())
    breaker.succeeded()
    for _ in range(2):
        breaker.admit()
        breaker.failed(Unavailable())
    assert breaker.state == "closed"
    breaker.failed(Unavailable())
    assert (breaker.state, breaker.opened) == ("open", 1)
    clock.now = 9.9
    with pytest.raises(CircuitOpenError, match=r"next trial in 0\.1 s"):
        breaker.admit()
    assert breaker.rejected == 1


def test_failures_on_the_input_never_open_it(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=1, clock=clock)
    for _ in range(10):
        breaker.admit()
        breaker.failed(ValueError("this text cannot be embedded"))
    assert (breaker.state, breaker.opened) == ("closed", 0)


def test_one_trial_after_the_cooldown(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=clock)
    breaker.failed(Unavailable())
    clock.now = 5.0
    assert breaker.state == "half_open"
    breaker.admit()  # the trial
    with pytest.raises(CircuitOpenError):  # everyone else while it runs
        breaker.admit()
    breaker.failed(Unavailable())  # trial failed: open for another cooldown
    assert breaker.state == "open"
    clock.now = 9.9
    assert breaker.state == "open"
    clock.now = 10.0
    breaker.admit()
    breaker.failed(ValueError("bad text"))  # the service answered: it is up again
    assert breaker.state == "closed" and breaker.opened == 1
    breaker.admit()


def test_an_unavailable_service_is_not_retried_group_by_group() -> None:
    calls: list[list[str]] = []

    def down(items: list[str]) -> list[str]:
        calls.append(items)
        raise Unavailable("timed out")

    results = run_groups(down, [["a"], ["b", "c"], ["d"]])
    assert calls == [["a", "b", "c", "d"]]
    assert [type(r) for r in results] == [Unavailable] * 3

    def bad_item(items: list[str]) -> list[str]:
        calls.append(items)
        if "c" in items:
            raise ValueError("c")
        return items

    calls.clear()
    results = run_groups(bad_item, [["a"], ["b", "c"], ["d"]])
    assert calls == [["a", "b", "c", "d"], ["a"], ["b", "c"], ["d"]]
    assert results[0] == ["a"] and isinstance(results[1], ValueError) and results[2] == ["d"]


def test_callers_waiting_on_one_outage_count_once(clock: Clock) -> None:
    """Callers batched into one call that timed out all fail together: one outage, not one per
    caller; a call admitted after that failure counts again."""
    breaker = CircuitBreaker(failures=2, clock=clock)
    admitted = [breaker.admit() for _ in range(5)]
    clock.now = 1.0  # the batch times out
    for at in admitted:
        breaker.failed(Unavailable(), at)
    assert breaker.state == "closed"
    clock.now = 2.0
    breaker.failed(Unavailable(), breaker.admit())
    assert breaker.state == "open"


def test_a_cancelled_trial_lets_the_next_one_through(clock: Clock) -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=clock)
    breaker.failed(Unavailable())
    clock.now = 5.0
    breaker.admit()
    breaker.abandon()  # the trial was cancelled
    breaker.admit()  # another caller tries
