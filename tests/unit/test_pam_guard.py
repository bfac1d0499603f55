"""A guarded dependency call: its timeout yields TIMEOUT and leaves the task clean, while a cancellation from
outside (the request went away) goes through, frees the breaker's probe and is never taken for a timeout."""

from __future__ import annotations

import asyncio
import time

from pam.api.deadline.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from pam.api.deadline.guard import GuardedDependency, Outcome


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Outcome]] = []

    def dependency_call(self, name: str, outcome: Outcome, seconds: float) -> None:
        self.seen.append((name, outcome))


def guarded(timeout: float, **policy: float) -> tuple[GuardedDependency, Calls]:
    calls = Calls()
    breaker = CircuitBreaker("dep", BreakerPolicy(**policy))  # type: ignore[arg-type]
    return GuardedDependency("dep", breaker, timeout, calls), calls


async def answer_after(seconds: float, value: str = "v") -> str:
    await asyncio.sleep(seconds)
    return value


def test_a_slow_call_times_out_and_the_task_goes_on_uncancelled() -> None:
    guard, calls = guarded(0.02)

    async def run() -> tuple[Outcome, int, str]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await guard.call(lambda: answer_after(5))
        assert loop.time() - started < 1.0
        task = asyncio.current_task()
        assert task is not None
        after = await answer_after(0.001, "still running")  # no cancellation left pending
        return result.outcome, task.cancelling(), after

    assert asyncio.run(run()) == (Outcome.TIMEOUT, 0, "still running")
    assert calls.seen == [("dep", Outcome.TIMEOUT)]


def test_the_deadline_shortens_the_timeout_and_a_passed_deadline_calls_nothing() -> None:
    guard, calls = guarded(5.0)
    started: list[str] = []

    async def tracked() -> str:
        started.append("called")
        return await answer_after(5)

    async def run() -> tuple[Outcome, Outcome]:
        loop = asyncio.get_running_loop()
        first = await guard.call(tracked, deadline=loop.time() + 0.02)
        second = await guard.call(tracked, deadline=loop.time() - 0.001)
        return first.outcome, second.outcome

    assert asyncio.run(asyncio.wait_for(run(), 2)) == (Outcome.TIMEOUT, Outcome.TIMEOUT)
    assert started == ["called"]
    assert calls.seen == [("dep", Outcome.TIMEOUT), ("dep", Outcome.TIMEOUT)]


def test_a_fast_call_answers_and_its_timer_never_fires_later() -> None:
    guard, calls = guarded(0.02)

    async def run() -> tuple[str | None, str]:
        result = await guard.call(lambda: answer_after(0.001, "quick"))
        later = await answer_after(0.05, "after the timeout would have passed")
        return result.value, later

    assert asyncio.run(run()) == ("quick", "after the timeout would have passed")
    assert calls.seen == [("dep", Outcome.OK)]


def test_a_cancellation_from_outside_goes_through_and_frees_the_probe() -> None:
    guard, calls = guarded(5.0, failures=1, cooldown=0.01)
    guard.breaker.record_failure()  # open; after the cool-down the next call is the one probe

    async def run() -> None:
        await asyncio.sleep(0.02)
        assert guard.breaker.state is BreakerState.HALF_OPEN
        task = asyncio.create_task(guard.call(lambda: answer_after(5)))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the cancellation was swallowed")
        assert guard.breaker.allow()  # the probe is free again

    asyncio.run(run())
    assert calls.seen == []  # neither an outcome nor a failure was recorded


def test_an_outside_cancellation_racing_the_timer_is_not_a_timeout() -> None:
    guard, calls = guarded(0.02)

    async def run() -> bool:
        task = asyncio.create_task(guard.call(lambda: answer_after(5)))
        await asyncio.sleep(0.001)  # the call is under way, its timer set
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        time.sleep(0.05)  # block the loop: the timer and the outside cancel both fire in its next turn
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(run()) is True
    assert calls.seen == []
