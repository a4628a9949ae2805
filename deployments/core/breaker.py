"""Circuit breakers, one per downstream, with an injected clock.

Closed: requests flow; ``failure_threshold`` consecutive failures open the breaker. Open:
nothing is sent until ``reset_s`` have passed, then the breaker is half-open and lets exactly
one trial request through. The trial's success closes it, its failure opens it again for
another ``reset_s``. (The legacy breaker had the same three states, threshold 3 and reset 30 s.)
"""

from __future__ import annotations

from collections.abc import Callable

from deployments.core.models import BreakerState, BreakerView

__all__ = ["BreakerBoard", "CircuitBreaker"]

Clock = Callable[[], float]


class CircuitBreaker:
    """The breaker of one downstream."""

    def __init__(self, name: str, failure_threshold: int, reset_s: float, clock: Clock) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker allows its trial request (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._reset_s - self._clock())

    def allow(self) -> bool:
        """Whether a request may go now; a half-open breaker admits one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or self._failures >= self._threshold:
            self._opened_at = self._clock()

    def view(self) -> BreakerView:
        opened_at = self._opened_at
        return BreakerView(
            downstream=self.name,
            state=self.state,
            consecutive_failures=self._failures,
            opened_at=opened_at,
            retry_at=None if opened_at is None else opened_at + self._reset_s,
        )


class BreakerBoard:
    """Breakers by downstream name, created closed on first use."""

    def __init__(self, failure_threshold: int, reset_s: float, clock: Clock) -> None:
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, self._threshold, self._reset_s, self._clock)
            self._breakers[name] = breaker
        return breaker

    def views(self) -> list[BreakerView]:
        return [self._breakers[name].view() for name in sorted(self._breakers)]

    def next_retry_in(self) -> float | None:
        """Seconds until the soonest open breaker half-opens; None when none is open."""
        waits = [b.retry_in() for b in self._breakers.values() if b.state is BreakerState.OPEN]
        return min(waits) if waits else None
