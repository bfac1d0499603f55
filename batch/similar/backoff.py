"""Exponential backoff with full jitter, and a deadline: the waits of the poller and the loader's retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt ``n`` (n >= 1): uniform in [0, min(cap, base * 2**(n-1))] ("full jitter").

    ``floor`` is the least delay, so a poller never spins.
    """

    base: float
    cap: float
    floor: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.floor < 0:
            raise ValueError(f"backoff needs 0 < base <= cap and floor >= 0, got {self.base}, {self.cap}, {self.floor}")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 60))
        return max(self.floor, self.rng.uniform(0.0, ceiling))
