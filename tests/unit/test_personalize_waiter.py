"""The status waiter: exponential backoff with jitter, the run's deadline, failures with their reason."""

from __future__ import annotations

import random

import pytest

from batch.personalize.errors import DeadlineExceededError, PersonalizeError, ResourceFailedError
from batch.personalize.waiter import Backoff, Deadline, Observed, Pending, StatusWaiter


class FakeClock:
    """A monotonic clock that moves only when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def statuses(*sequence: Observed) -> tuple[list[int], Pending]:
    """A resource showing ``sequence`` on successive Describes (the last one from then on)."""
    calls = [0]

    def describe() -> Observed:
        calls[0] += 1
        return sequence[min(calls[0], len(sequence)) - 1]

    return calls, Pending(f"resource {id(calls)}", f"arn:{id(calls)}", describe)


PENDING = Observed("CREATE PENDING")
IN_PROGRESS = Observed("CREATE IN_PROGRESS")
ACTIVE = Observed("ACTIVE")


def waiter(clock: FakeClock, seconds: float = 3600.0, **backoff: float) -> StatusWaiter:
    return StatusWaiter(Backoff(**backoff), Deadline(seconds, clock=clock), sleep=clock.sleep, rng=random.Random(7))


def test_backoff_grows_exponentially_to_the_cap_with_jitter_below_it() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, factor=2.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff.delay(attempt, rng) for attempt in range(10)]
    ceilings = [min(30.0, 2.0**attempt) for attempt in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.5 <= delay <= ceiling
    assert delays[-1] <= 30.0
    assert len({round(d / c, 6) for d, c in zip(delays, ceilings, strict=True)}) > 1, "jitter varies"
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)


def test_waits_until_active_with_growing_pauses() -> None:
    clock = FakeClock()
    calls, pending = statuses(PENDING, IN_PROGRESS, IN_PROGRESS, IN_PROGRESS, IN_PROGRESS, ACTIVE)
    final = waiter(clock, initial=1.0, maximum=8.0, jitter=0.0).wait([pending])
    assert final == {pending.arn: ACTIVE}
    assert calls[0] == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_several_resources_are_polled_together_until_each_settles() -> None:
    clock = FakeClock()
    fast_calls, fast = statuses(PENDING, ACTIVE)
    slow_calls, slow = statuses(PENDING, IN_PROGRESS, IN_PROGRESS, ACTIVE)
    seen: list[tuple[str, str]] = []
    the_waiter = waiter(clock, initial=1.0, jitter=0.0)
    the_waiter.on_poll = lambda p, o: seen.append((p.arn, o.status))
    the_waiter.wait([fast, slow])
    assert fast_calls[0] == 2, "a settled resource is not described again"
    assert slow_calls[0] == 4
    assert len(clock.sleeps) == 3
    assert seen[-1] == (slow.arn, "ACTIVE")


def test_a_failed_resource_reports_its_failure_reason_after_the_others_settle() -> None:
    clock = FakeClock()
    _, failing = statuses(PENDING, Observed("CREATE FAILED", "Input file not found: s3://b/users.csv"))
    other_calls, other = statuses(PENDING, IN_PROGRESS, IN_PROGRESS, ACTIVE)
    with pytest.raises(ResourceFailedError) as raised:
        waiter(clock, initial=1.0).wait([failing, other])
    assert raised.value.reason == "Input file not found: s3://b/users.csv"
    assert raised.value.status == "CREATE FAILED"
    assert "Input file not found: s3://b/users.csv" in str(raised.value)
    assert failing.label in str(raised.value)
    assert other_calls[0] == 4, "the other resource was waited for, not abandoned"


def test_several_failures_are_reported_together() -> None:
    clock = FakeClock()
    _, one = statuses(Observed("CREATE FAILED", "reason one"))
    _, two = statuses(PENDING, Observed("CREATE FAILED", None))
    with pytest.raises(PersonalizeError) as raised:
        waiter(clock).wait([one, two])
    assert "reason one" in str(raised.value)
    assert "the service gave no failureReason" in str(raised.value)


@pytest.mark.parametrize("status", ["UPDATE FAILED", "CREATE STOPPED", "DELETE PENDING", "DELETE IN_PROGRESS"])
def test_other_end_states_are_failures(status: str) -> None:
    _, pending = statuses(Observed(status, "gone"))
    with pytest.raises(ResourceFailedError, match=status):
        waiter(FakeClock()).wait([pending])


def test_the_deadline_stops_the_wait_and_names_what_is_still_in_progress() -> None:
    clock = FakeClock()
    calls, pending = statuses(PENDING, IN_PROGRESS)
    with pytest.raises(DeadlineExceededError) as raised:
        waiter(clock, seconds=100.0, initial=1.0, maximum=16.0, jitter=0.0).wait([pending])
    message = str(raised.value)
    assert "CREATE IN_PROGRESS" in message
    assert pending.label in message
    assert "running the command again waits for them" in message
    assert clock.now - 1000.0 == pytest.approx(100.0), "never sleeps past the deadline"
    assert max(clock.sleeps) <= 16.0
    assert calls[0] >= 8


def test_an_active_resource_needs_no_sleep() -> None:
    clock = FakeClock()
    waiter(clock).wait([statuses(ACTIVE)[1]])
    waiter(clock).wait([])
    assert clock.sleeps == []
