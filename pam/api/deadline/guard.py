"""One dependency behind its breaker and timeout: a call yields a :class:`Result`, never an exception."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from pam.api.deadline.breaker import CircuitBreaker

T = TypeVar("T")
log = logging.getLogger("pam.api")


class Outcome(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    BREAKER_OPEN = "breaker_open"


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
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
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - asyncio.get_running_loop().time())
        if timeout <= 0:
            self._observer.dependency_call(self.name, Outcome.TIMEOUT, 0.0)
            return Result(Outcome.TIMEOUT)
        if not self.breaker.allow():
            self._observer.dependency_call(self.name, Outcome.BREAKER_OPEN, 0.0)
            return Result(Outcome.BREAKER_OPEN)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                value = await make()
        except TimeoutError:
            outcome = Outcome.TIMEOUT
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except Exception as exc:
            outcome = Outcome.ERROR
            log.warning("dependency %s failed: %s", self.name, type(exc).__name__, extra={"error": str(exc)[:200]})
        else:
            self.breaker.record_success()
            self._observer.dependency_call(self.name, Outcome.OK, time.perf_counter() - started)
            return Result(Outcome.OK, value)
        self.breaker.record_failure()
        self._observer.dependency_call(self.name, outcome, time.perf_counter() - started)
        return Result(outcome)
