"""Request-rate quotas: a token bucket per tracker."""

from __future__ import annotations

from typing import Final

#: The real service's PutEvents quota: requests per second per dataset group (one tracker per group).
DEFAULT_PUT_EVENTS_PER_SECOND: Final = 1000.0


class TokenBucket:
    """Allows ``rate`` calls per second on average and bursts of up to ``burst`` calls.

    The bucket starts full. ``rate`` of ``None`` or ``0`` means unlimited. Time is passed in by the
    caller (monotonic seconds), so the bucket is deterministic under a fake clock.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float | None, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = rate if rate else None
        self.burst = max(1.0, burst if burst else (self.rate or 1.0))
        self.tokens = self.burst
        self.updated = now

    @property
    def unlimited(self) -> bool:
        """Whether every call is allowed."""
        return self.rate is None

    def try_acquire(self, now: float) -> bool:
        """Take one token if there is one at ``now``; return whether the call is allowed."""
        rate = self.rate
        if rate is None:
            return True
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
