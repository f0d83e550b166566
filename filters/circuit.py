"""A circuit breaker, so a guard whose embedding service is down fails fast.

After ``failures`` consecutive calls that found the service unavailable (timed out,
unreachable, a worker that exited: :class:`~filters.batching.Unavailable`), the circuit
*opens*: for ``cooldown_s`` every call fails at once instead of waiting out a timeout of its own.
Then one call is let through as a trial (*half-open*): its success closes the circuit, its
failure opens it for another cooldown. A call that fails for its own input (a bad item) is not
an outage and leaves the count alone, so one client cannot open the circuit for everyone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from filters.batching import Unavailable

State = Literal["closed", "open", "half_open"]


class CircuitOpenError(Unavailable):
    """The circuit is open: the call was not attempted."""


class CircuitBreaker:
    """Counts consecutive outages and decides whether a call may go ahead (thread-safe)."""

    def __init__(
        self, *, failures: int = 2, cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.opened = 0  # times the circuit opened
        self.rejected = 0  # calls failed fast while it was open
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial call is running
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._trial or self.clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    def admit(self) -> None:
        """Let a call go ahead, or raise :class:`CircuitOpenError`; past the cooldown, one
        caller at a time is let through as the trial."""
        with self._lock:
            state = self._state()
            if state == "half_open":
                self._trial = True
                return
            if state == "open":
                self.rejected += 1
                wait = self.cooldown_s - (self.clock() - (self._opened_at or 0.0))
                raise CircuitOpenError(
                    f"the embedding service is unavailable (circuit open, next trial in "
                    f"{max(wait, 0.0):.1f} s)"
                )

    def succeeded(self) -> None:
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False

    def failed(self, exc: BaseException) -> None:
        """Record a failed call; only an :class:`Unavailable` service counts towards opening."""
        with self._lock:
            if not isinstance(exc, Unavailable):
                if self._trial:  # the service answered: it is up
                    self._consecutive, self._opened_at, self._trial = 0, None, False
                return
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                self.opened += self._opened_at is None
                self._opened_at, self._trial = self.clock(), False
