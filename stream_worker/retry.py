"""Exponential backoff with full jitter, for throttling, 5xx and connection errors."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""

    base: float = 0.05
    cap: float = 5.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError("backoff needs 0 < base <= cap")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(max(attempt - 1, 0), 30)))
        return self.rng.uniform(0.0, ceiling)
