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
        self._failed_at = float("-inf")  # when the last outage was counted
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

    def admit(self) -> float:
        """Let a call go ahead (returning when it was admitted, for :meth:`failed`), or raise
        :class:`CircuitOpenError`; past the cooldown, one caller at a time is let through as the
        trial."""
        with self._lock:
            state = self._state()
            if state == "half_open":
                self._trial = True
                return self.clock()
            if state == "open":
                self.rejected += 1
                wait = self.cooldown_s - (self.clock() - (self._opened_at or 0.0))
                raise CircuitOpenError(
                    f"the embedding service is unavailable (circuit open, next trial in "
                    f"{max(wait, 0.0):.1f} s)"
                )
            return self.clock()

    def succeeded(self) -> None:
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False

    def abandon(self) -> None:
        """A call ended without an answer either way (cancelled): a trial may be tried again."""
        with self._lock:
            self._trial = False

    def failed(self, exc: Exception, admitted_at: float | None = None) -> None:
        """Record a failed call (admitted at ``admitted_at``); only an :class:`Unavailable`
        service counts towards opening, and calls that were already waiting when another one
        failed count with it as one outage (callers batched into one timed-out call)."""
        with self._lock:
            if not isinstance(exc, Unavailable):
                if self._trial:  # the service answered: it is up
                    self._consecutive, self._opened_at, self._trial = 0, None, False
                return
            if admitted_at is not None and admitted_at < self._failed_at and not self._trial:
                return
            self._failed_at = self.clock()
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                self.opened += self._opened_at is None
                self._opened_at, self._trial = self.clock(), False
