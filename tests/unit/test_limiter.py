"""AdaptiveLimiter: additive increase, multiplicative decrease, and a rate after throttling."""

from __future__ import annotations

import threading

from stream_worker.limiter import AdaptiveLimiter
from tests.unit.fakes import FakeClock


def test_additive_increase_up_to_the_maximum() -> None:
    limiter = AdaptiveLimiter(2, 4, clock=FakeClock())
    for _ in range(100):
        assert limiter.acquire()
        limiter.release(succeeded=True)
    assert limiter.limit == 4
    assert limiter.rate is None


def test_throttle_halves_concurrency_and_starts_a_rate_limit_once_per_cooldown() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(8, 8, cooldown=0.5, clock=clock)
    for _ in range(8):
        assert limiter.acquire()
    for _ in range(8):  # a burst of throttles counts once
        limiter.release(throttled=True)
    assert limiter.limit == 4
    assert limiter.rate is not None
    assert 0 < limiter.rate <= 8 * 0.85
    clock.advance(1.0)
    assert limiter.acquire()
    limiter.release(throttled=True)
    assert limiter.limit == 2


def test_never_below_minimum() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(1, 4, cooldown=0, clock=clock)
    for _ in range(10):
        clock.advance(1)
        assert limiter.acquire()
        limiter.release(throttled=True)
    assert limiter.limit == 1
    assert limiter.rate is not None and limiter.rate >= 1.0


def test_acquire_blocks_at_the_limit_and_stop_releases_waiters() -> None:
    limiter = AdaptiveLimiter(1, 1)
    assert limiter.acquire()
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.acquire(stop)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "a second caller waits while the only slot is taken"
    stop.set()
    limiter.wake()
    waiter.join(2)
    assert result == [False]


def test_rate_limit_spaces_calls() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, 4, cooldown=0, clock=clock)
    assert limiter.acquire()
    limiter.release(throttled=True)  # observed 1 call in the last second -> rate 1.0 (minimum)
    assert limiter.rate == 1.0
    assert limiter.acquire()
    limiter.release()
    blocked = threading.Thread(target=limiter.acquire)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive(), "the next call waits for its slot one second later"
    clock.advance(1.0)
    blocked.join(2)
    assert not blocked.is_alive()


def test_rate_limit_is_lifted_after_a_quiet_period() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, 4, rate_ttl=10.0, clock=clock)
    assert limiter.acquire()
    limiter.release(throttled=True)
    assert limiter.rate is not None
    clock.advance(10.5)
    assert limiter.acquire()
    assert limiter.rate is None
    limiter.release(succeeded=True)


def test_rate_grows_at_least_one_call_per_second_for_each_second_of_successes() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, 4, clock=clock)
    assert limiter.acquire()
    limiter.release(throttled=True)
    assert limiter.rate == 1.0
    clock.advance(1.0)
    assert limiter.acquire()
    limiter.release(succeeded=True)  # one second's worth of calls at 1/s
    assert limiter.rate == 2.0
    for _ in range(2):  # one second's worth at 2/s (spaced by the fake clock)
        clock.advance(1.0)
        assert limiter.acquire()
        limiter.release(succeeded=True)
    assert limiter.rate is not None and 2.8 < limiter.rate <= 3.0


def test_successful_calls_are_remembered_for_one_second_only() -> None:
    # The achieved rate looks one second back; a worker that is never throttled must not keep the time
    # of every call it ever made (100 calls/s would be hundreds of MB a day).
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, 4, clock=clock)
    for _ in range(50_000):
        clock.advance(0.01)
        assert limiter.acquire()
        limiter.release(succeeded=True)
    assert len(limiter._starts) <= 101
    # ... and what it keeps is still the rate achieved: 100 calls in the last second, 85% of it after a throttle.
    assert limiter.acquire()
    limiter.release(throttled=True)
    assert limiter.rate is not None and 0.85 * 99 <= limiter.rate <= 0.85 * 101
