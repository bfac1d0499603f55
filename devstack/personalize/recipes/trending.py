"""Trending-Now (``aws-trending-now``): items whose interactions grow fastest between two intervals.

With ``T`` the latest interaction time seen (imported or streamed) and ``w`` the trend discovery
frequency, each item counts its interactions in the last interval ``(T - w, T]`` (``now``) and in the one
before ``(T - 2w, T - w]`` (``before``), and trends by::

    trend = (now - before) / sqrt(before + 1)

the increase measured in standard deviations of a Poisson count of ``before``: a game doubling from 20
to 40 plays (4.4) outranks a game going from 0 to 2 (2.0) and one going from 1000 to 1100 (3.2).
Items with a positive trend come first, best first; then the rest by popularity (distinct users).

Streamed events (PutEvents) update the counts and ``T`` at once, without retraining, as the real recipe
considers new interactions without a new solution version. No scores, as the real recipe.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devstack.personalize.recipes.base import Interaction, Model, ParameterError, Popularity, ScoredItem, unique

#: The frequencies the real recipe offers (``featureTransformationParameters.trend_discovery_frequency``).
TREND_DISCOVERY_FREQUENCIES: Final = {
    "30 minutes": 1800.0,
    "1 hour": 3600.0,
    "3 hours": 10800.0,
    "1 day": 86400.0,
}
DEFAULT_TREND_DISCOVERY_FREQUENCY: Final = "1 day"


@dataclass(frozen=True, slots=True)
class TrendingParameters:
    """The interval over which growth is measured, in seconds."""

    interval_seconds: float = TREND_DISCOVERY_FREQUENCIES[DEFAULT_TREND_DISCOVERY_FREQUENCY]

    @classmethod
    def parse(cls, config: Mapping[str, str]) -> TrendingParameters:
        """From ``trend_discovery_frequency`` (one of :data:`TREND_DISCOVERY_FREQUENCIES`)."""
        raw = config.get("trend_discovery_frequency", DEFAULT_TREND_DISCOVERY_FREQUENCY).strip()
        seconds = TREND_DISCOVERY_FREQUENCIES.get(raw)
        if seconds is None:
            raise ParameterError(
                f"trend_discovery_frequency must be one of {list(TREND_DISCOVERY_FREQUENCIES)}, got {raw!r}"
            )
        return cls(interval_seconds=seconds)


class TrendingModel(Model):
    """Interaction times per item, kept sorted; trends are recomputed when data changed."""

    realtime = True

    def __init__(self, interactions: Sequence[Interaction], params: TrendingParameters) -> None:
        self.interval = params.interval_seconds
        self.popularity = Popularity(interactions)
        self.times: dict[str, list[float]] = {}
        for interaction in interactions:
            self.times.setdefault(interaction.item_id, []).append(interaction.timestamp)
        for stamps in self.times.values():
            stamps.sort()
        self.latest = max((interaction.timestamp for interaction in interactions), default=0.0)
        self._version = 0
        self._cached: tuple[int, list[str]] | None = None

    def observe(self, interaction: Interaction) -> None:
        insort(self.times.setdefault(interaction.item_id, []), interaction.timestamp)
        self.latest = max(self.latest, interaction.timestamp)
        self._version += 1

    def counts(self, item_id: str) -> tuple[int, int]:
        """(interactions in the interval before, interactions in the last interval) of ``item_id``."""
        stamps = self.times.get(item_id, [])
        end = self.latest
        middle = end - self.interval
        start = middle - self.interval
        at_middle = bisect_right(stamps, middle)
        return at_middle - bisect_right(stamps, start), bisect_right(stamps, end) - at_middle

    def trend(self, item_id: str) -> float:
        """The item's growth between the two intervals (see the module's formula)."""
        before, now = self.counts(item_id)
        return (now - before) / math.sqrt(before + 1)

    def trending(self) -> list[str]:
        """Items with a positive trend, best first."""
        cached = self._cached
        if cached is not None and cached[0] == self._version:
            return cached[1]
        scored = [(self.trend(item_id), item_id) for item_id in self.times]
        order = [item_id for trend, item_id in sorted(scored, key=lambda pair: (-pair[0], pair[1])) if trend > 0]
        self._cached = (self._version, order)
        return order

    def ranked(self, *, user_id: str | None = None, item_id: str | None = None) -> Iterator[ScoredItem]:
        rising = ((other, None) for other in self.trending())
        popular = ((other, None) for other in self.popularity.order)
        newcomers = ((other, None) for other in sorted(self.times))
        return unique(rising, popular, newcomers, exclude=(item_id,) if item_id else ())


def train(interactions: Sequence[Interaction], params: TrendingParameters) -> TrendingModel:
    """Index interaction times per item."""
    return TrendingModel(interactions, params)
