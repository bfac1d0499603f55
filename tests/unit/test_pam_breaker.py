"""The circuit breaker with a fake clock: closed -> open -> half-open -> closed / open again."""

from __future__ import annotations

import pytest

from pam.api.deadline.breaker import BreakerPolicy, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(cb: CircuitBreaker) -> BreakerState:
    return cb.state


def breaker(clock: FakeClock, **policy: float) -> tuple[CircuitBreaker, list[BreakerState]]:
    changes: list[BreakerState] = []
    made = CircuitBreaker(
        "dep",
        BreakerPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        on_change=lambda _name, state: changes.append(state),
    )
    return made, changes


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = FakeClock()
    cb, changes = breaker(clock, failures=3, cooldown=5.0)
    for _ in range(2):
        assert cb.allow()
        cb.record_failure()
    assert state(cb) is BreakerState.CLOSED
    assert cb.allow()
    cb.record_failure()
    assert state(cb) is BreakerState.OPEN
    assert changes == [BreakerState.OPEN]
    assert not cb.allow()
    assert cb.retry_in == pytest.approx(5.0)
    assert cb.opened == 1


def test_a_success_resets_the_consecutive_count() -> None:
    cb, _ = breaker(FakeClock(), failures=3, window=100, min_calls=100)
    for _ in range(10):
        cb.record_failure()
        cb.record_failure()
        cb.record_success()
    assert state(cb) is BreakerState.CLOSED


def test_opens_on_the_failure_rate_of_the_window() -> None:
    cb, _ = breaker(FakeClock(), failures=100, failure_rate=0.5, window=10, min_calls=10)
    for _ in range(4):
        cb.record_success()
        cb.record_failure()
    assert state(cb) is BreakerState.CLOSED  # 8 calls: below min_calls
    cb.record_success()
    assert state(cb) is BreakerState.CLOSED  # 4 of 9
    cb.record_failure()
    assert state(cb) is BreakerState.OPEN  # 5 of 10


def test_the_window_forgets_old_failures() -> None:
    cb, _ = breaker(FakeClock(), failures=100, failure_rate=0.5, window=4, min_calls=4)
    cb.record_failure()
    cb.record_success()
    cb.record_success()
    cb.record_success()
    cb.record_failure()  # window: s s s f
    assert state(cb) is BreakerState.CLOSED
    cb.record_success()  # s s f s
    cb.record_failure()  # s f s f -> 2 of 4
    assert state(cb) is BreakerState.OPEN


def test_half_open_after_the_cooldown_lets_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    cb, changes = breaker(clock, failures=1, cooldown=5.0)
    cb.record_failure()
    clock.now += 4.9
    assert not cb.allow()
    clock.now += 0.2
    assert state(cb) is BreakerState.HALF_OPEN
    assert cb.allow()
    assert not cb.allow()  # one probe at a time
    cb.record_success()
    assert state(cb) is BreakerState.CLOSED
    assert cb.allow()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_probe_opens_again_for_a_full_cooldown() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, failures=1, cooldown=5.0)
    cb.record_failure()
    clock.now += 5.0
    assert cb.allow()
    cb.record_failure()
    assert state(cb) is BreakerState.OPEN
    assert cb.opened == 2
    clock.now += 4.0
    assert not cb.allow()
    clock.now += 1.0
    assert cb.allow()


def test_a_probe_whose_caller_went_away_is_released() -> None:
    clock = FakeClock()
    cb, _ = breaker(clock, failures=1, cooldown=1.0)
    cb.record_failure()
    clock.now += 1.0
    assert cb.allow()
    cb.release()
    assert cb.allow()


@pytest.mark.parametrize(
    "policy",
    [{"failures": 0}, {"failure_rate": 0.0}, {"failure_rate": 1.5}, {"min_calls": 30, "window": 20}, {"cooldown": 0}],
)
def test_policy_rejects_nonsense(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerPolicy(**policy)  # type: ignore[arg-type]
