"""How many PutEvents calls may run at once, and how fast: adaptive, AIMD.

Concurrency grows by one per window of successful calls (additive increase) and halves on
throttling (multiplicative decrease). The first throttle also switches on a call-rate limit taken
from the rate actually achieved, which then grows a few percent a second and shrinks on each
throttle: with a quota of Q calls/s the worker settles just under Q instead of bouncing off it.
The rate limit grows by at least one call/s per second and is lifted altogether after
``rate_ttl`` seconds without a throttle, so a stray throttle at low traffic cannot pin the
worker to a crawl. Decreases are spaced by ``cooldown`` so that one burst of throttles counts
once. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class AdaptiveLimiter:
    """A semaphore whose size and pace adapt to throttling."""

    def __init__(
        self,
        initial: int = 4,
        maximum: int = 32,
        minimum: int = 1,
        *,
        decrease: float = 0.5,
        rate_decrease: float = 0.85,
        rate_growth_per_second: float = 0.03,
        min_rate: float = 1.0,
        cooldown: float = 0.5,
        rate_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("limiter needs 1 <= minimum <= initial <= maximum")
        self._lock = threading.Condition()
        self._limit = float(initial)
        self._min = float(minimum)
        self._max = float(maximum)
        self._decrease = decrease
        self._rate_decrease = rate_decrease
        self._growth = rate_growth_per_second
        self._min_rate = min_rate
        self._cooldown = cooldown
        self._rate_ttl = rate_ttl
        self._clock = clock
        self._in_use = 0
        self._rate: float | None = None
        self._next_slot = 0.0
        self._last_decrease = -1e9
        self._starts: deque[float] = deque()

    @property
    def limit(self) -> float:
        return self._limit

    @property
    def rate(self) -> float | None:
        """Calls per second allowed, or None while no throttle has been seen."""
        return self._rate

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot (and, when rate-limited, for the call's turn); False if ``stop`` is set."""
        with self._lock:
            while True:
                if stop is not None and stop.is_set():
                    return False
                if self._in_use < int(self._limit):
                    now = self._clock()
                    if self._rate is not None and now - self._last_decrease > self._rate_ttl:
                        self._rate = None
                    if self._rate is None or now >= self._next_slot:
                        if self._rate is not None:
                            self._next_slot = max(self._next_slot, now - 0.05) + 1.0 / self._rate
                        self._in_use += 1
                        return True
                    self._lock.wait(min(self._next_slot - now, 0.1))
                else:
                    self._lock.wait(0.1)

    def release(self, *, throttled: bool = False, succeeded: bool = False) -> None:
        """End a call; ``throttled`` shrinks the limits, ``succeeded`` grows them."""
        with self._lock:
            self._in_use -= 1
            now = self._clock()
            if throttled:
                self._on_throttle(now)
            elif succeeded:
                # The achieved rate counts accepted calls only: fast failures (an outage's 503s)
                # would inflate it and set the rate limit far above what the service takes.
                self._starts.append(now)
                self._observed_rate(now)  # forgets what is older than a second: memory stays bounded
                self._limit = min(self._max, self._limit + 1.0 / self._limit)
                if self._rate is not None:
                    # ~rate successes a second: grow by max(growth * rate, 1) calls/s per second
                    self._rate += max(self._growth * self._rate, 1.0) / max(self._rate, 1.0)
            self._lock.notify_all()

    def _observed_rate(self, now: float) -> float:
        starts = self._starts
        while starts and starts[0] < now - 1.0:
            starts.popleft()
        return float(len(starts))

    def _on_throttle(self, now: float) -> None:
        if now - self._last_decrease < self._cooldown:
            return
        self._last_decrease = now
        self._limit = max(self._min, self._limit * self._decrease)
        base = self._observed_rate(now) if self._rate is None else min(self._rate, self._observed_rate(now))
        self._rate = max(self._min_rate, base * self._rate_decrease)

    def wake(self) -> None:
        """Wake waiters (e.g. to notice a stop)."""
        with self._lock:
            self._lock.notify_all()
