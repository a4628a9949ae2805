"""Circuit breaker state machine with a fake clock."""

from __future__ import annotations

import pytest

from deployments.core.breaker import BreakerBoard, CircuitBreaker
from deployments.core.models import BreakerState
from tests.unit._resources_helpers import FakeClock


def state(breaker: CircuitBreaker) -> BreakerState:
    # A function, so mypy does not narrow the property across calls that change it.
    return breaker.state


def make(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("cot", failure_threshold=3, reset_s=30.0, clock=clock)


def test_opens_after_three_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    view = breaker.view()
    assert view.consecutive_failures == 3
    assert view.retry_at == clock.now + 30.0


def test_a_success_resets_the_failure_count() -> None:
    breaker = make(FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED


def test_half_open_after_reset_admits_one_trial_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(29.9)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow(), "only one trial at a time"
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_failed_trial_opens_again_for_a_full_reset_period() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    clock.advance(29)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_board_creates_closed_breakers_and_reports_the_next_retry() -> None:
    clock = FakeClock()
    board = BreakerBoard(3, 30.0, clock)
    assert board.next_retry_in() is None
    for _ in range(3):
        board.get("b").record_failure()
    clock.advance(10)
    board.get("a")
    assert [v.downstream for v in board.views()] == ["a", "b"]
    assert [v.state for v in board.views()] == [BreakerState.CLOSED, BreakerState.OPEN]
    assert board.next_retry_in() == 20.0
