"""One dependency behind its breaker and timeout: a call yields a :class:`Result`, never an exception."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Generic, NamedTuple, Protocol, TypeVar

from pam.api.deadline.breaker import CircuitBreaker

T = TypeVar("T")
log = logging.getLogger("pam.api")


class Outcome(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    BREAKER_OPEN = "breaker_open"


class Result(NamedTuple, Generic[T]):
    """A guarded call's outcome and, when OK, its value (a named tuple: five are made per lobby)."""

    outcome: Outcome
    value: T | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


class CallObserver(Protocol):
    def dependency_call(self, name: str, outcome: Outcome, seconds: float) -> None: ...


class GuardedDependency:
    """Calls one dependency within ``min(timeout, what is left of the deadline)``, through its breaker.

    A timeout or an exception counts as a failure for the breaker and yields TIMEOUT or ERROR; an open
    breaker yields BREAKER_OPEN without calling. Deadlines are on the event loop's clock.
    """

    def __init__(self, name: str, breaker: CircuitBreaker, timeout: float, observer: CallObserver) -> None:
        self.name = name
        self.breaker = breaker
        self.timeout = timeout
        self._observer = observer

    async def call(self, make: Callable[[], Awaitable[T]], *, deadline: float | None = None) -> Result[T]:
        loop = asyncio.get_running_loop()
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - loop.time())
        if timeout <= 0:
            self._observer.dependency_call(self.name, Outcome.TIMEOUT, 0.0)
            return Result(Outcome.TIMEOUT)
        if not self.breaker.allow():
            self._observer.dependency_call(self.name, Outcome.BREAKER_OPEN, 0.0)
            return Result(Outcome.BREAKER_OPEN)
        task = asyncio.current_task()
        if task is None:
            self.breaker.release()
            raise RuntimeError("a guarded call must run inside a task")
        # asyncio.timeout's logic, without its context manager's two coroutines per call (this is the
        # hot path: five calls per lobby): the timer cancels the task; a cancellation that the timer
        # asked for and nobody else did becomes TIMEOUT.
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = loop.call_later(timeout, expire)
        started = time.perf_counter()
        try:
            value = await make()
        except asyncio.CancelledError:
            if not (expired and task.uncancel() <= cancelling):
                self.breaker.release()
                raise
            outcome = Outcome.TIMEOUT
        except Exception as exc:
            outcome = Outcome.ERROR
            log.warning("dependency %s failed: %s", self.name, type(exc).__name__, extra={"error": str(exc)[:200]})
        else:
            if expired:  # the timer fired as the answer arrived: the answer counts, the cancel does not
                task.uncancel()
            self.breaker.record_success()
            self._observer.dependency_call(self.name, Outcome.OK, time.perf_counter() - started)
            return Result(Outcome.OK, value)
        finally:
            timer.cancel()
        self.breaker.record_failure()
        self._observer.dependency_call(self.name, outcome, time.perf_counter() - started)
        return Result(outcome)
