"""A circuit breaker per dependency: closed -> open -> half-open -> closed.

Closed: every call goes through; the breaker opens after ``failures`` consecutive failures, or when at
least ``min_calls`` of the last ``window`` calls are recorded and ``failure_rate`` of them failed. Open:
no call goes through until ``cooldown`` seconds have passed; then the breaker is half-open and lets
``probes`` calls through: a success closes it (and forgets the past), a failure opens it again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: Gauge values of the states.
STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown: float = 5.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1 or self.probes < 1:
            raise ValueError("failures, window and probes must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be within (0, 1]")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError("min_calls must be within 1..window")
        if self.cooldown <= 0:
            raise ValueError("cooldown must be positive")


class CircuitBreaker:
    """Decides whether a call to one dependency may go through. Not thread-safe: one event loop."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BreakerPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._recent: deque[bool] = deque(maxlen=policy.window)
        self._failures_in_window = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = 0
        #: How often the breaker opened.
        self.opened = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker past its cool-down reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.policy.cooldown:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    @property
    def retry_in(self) -> float:
        """Seconds until an open breaker probes again (0 unless open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.policy.cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go through now; a caller that was allowed must record its outcome."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probing < self.policy.probes:
            self._probing += 1
            return True
        return False

    def release(self) -> None:
        """An allowed call ended without an outcome (its caller went away): free its probe."""
        if self._state is BreakerState.HALF_OPEN and self._probing > 0:
            self._probing -= 1

    def record_success(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._reset()
            self._move(BreakerState.CLOSED)
            return
        self._consecutive = 0
        self._push(ok=True)

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self._state is BreakerState.OPEN:
            return
        self._consecutive += 1
        self._push(ok=False)
        policy = self.policy
        if self._consecutive >= policy.failures or (
            len(self._recent) >= policy.min_calls
            and self._failures_in_window >= policy.failure_rate * len(self._recent)
        ):
            self._open()

    def _push(self, *, ok: bool) -> None:
        if len(self._recent) == self._recent.maxlen and not self._recent[0]:
            self._failures_in_window -= 1
        self._recent.append(ok)
        if not ok:
            self._failures_in_window += 1

    def _reset(self) -> None:
        self._recent.clear()
        self._failures_in_window = 0
        self._consecutive = 0
        self._probing = 0

    def _open(self) -> None:
        self._reset()
        self._opened_at = self._clock()
        self.opened += 1
        self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        if state is BreakerState.HALF_OPEN:
            self._probing = 0
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)
