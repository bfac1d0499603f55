"""SIMS (``aws-sims``, RELATED_ITEMS): items that co-occur with the query item in user histories.

Training keeps users whose history length lies between the ``min_user_history_length_percentile`` and
``max_user_history_length_percentile`` of all lengths (drops bots and one-off visitors), counts
co-occurrences (:mod:`.cooccurrence`) and keeps, per item, the neighbours seen together with it by at
least ``min_cointeraction_count`` users, ranked by::

    score(i -> j) = co(i, j) / (pop(i) ** (1 - popularity_discount_factor) * pop(j) ** popularity_discount_factor)

After the neighbours (or for an item without any, or unknown) come the most popular items. Like the
real recipe, SIMS returns no scores and ignores streamed events until it is retrained.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devstack.personalize.recipes.base import (
    Interaction,
    Model,
    Popularity,
    ScoredItem,
    histories,
    parameter,
    percentile_bounds,
    unique,
)
from devstack.personalize.recipes.cooccurrence import CoOccurrence

#: The most results GetRecommendations may ask for; no item keeps more neighbours than this.
MAX_NEIGHBOURS: Final = 500


@dataclass(frozen=True, slots=True)
class SimsParameters:
    """SIMS hyperparameters (names and defaults of the real recipe)."""

    popularity_discount_factor: float = 0.5
    min_cointeraction_count: int = 3
    min_user_history_length_percentile: float = 0.005
    max_user_history_length_percentile: float = 0.995

    @classmethod
    def parse(cls, config: Mapping[str, str]) -> SimsParameters:
        """From ``algorithmHyperParameters`` and ``featureTransformationParameters`` (merged)."""
        low = parameter(config, "min_user_history_length_percentile", 0.005, float, lowest=0.0, highest=1.0)
        high = parameter(config, "max_user_history_length_percentile", 0.995, float, lowest=0.0, highest=1.0)
        return cls(
            popularity_discount_factor=parameter(
                config, "popularity_discount_factor", 0.5, float, lowest=0.0, highest=1.0
            ),
            min_cointeraction_count=parameter(config, "min_cointeraction_count", 3, int, lowest=0, highest=10),
            min_user_history_length_percentile=low,
            max_user_history_length_percentile=max(low, high),
        )


class SimsModel(Model):
    """Neighbours per item, then popular items."""

    def __init__(self, neighbours: dict[str, list[tuple[str, float]]], popularity: Popularity) -> None:
        self.neighbours = neighbours
        self.popularity = popularity

    def ranked(self, *, user_id: str | None = None, item_id: str | None = None) -> Iterator[ScoredItem]:
        related = ((other, None) for other, _ in self.neighbours.get(item_id or "", ()))
        popular = ((other, None) for other in self.popularity.order)
        return unique(related, popular, exclude=(item_id,) if item_id else ())

    def similarity(self, item_id: str) -> list[tuple[str, float]]:
        """The neighbours of ``item_id`` with their similarity (for inspection and tests)."""
        return list(self.neighbours.get(item_id, ()))


def kept_histories(
    interactions: Sequence[Interaction], low_percentile: float, high_percentile: float
) -> dict[str, list[str]]:
    """Distinct histories of the users whose length lies within the percentile bounds."""
    every = histories(interactions)
    low, high = percentile_bounds([len(items) for items in every.values()], low_percentile, high_percentile)
    return {user: items for user, items in every.items() if low <= len(items) <= high}


def train(interactions: Sequence[Interaction], params: SimsParameters) -> SimsModel:
    """Train on ``interactions`` (already filtered by event type and value threshold)."""
    kept = kept_histories(
        interactions, params.min_user_history_length_percentile, params.max_user_history_length_percentile
    )
    counts = CoOccurrence.count(kept)
    neighbours = counts.neighbours(
        discount=params.popularity_discount_factor,
        min_count=max(1, params.min_cointeraction_count),
        limit=MAX_NEIGHBOURS,
    )
    return SimsModel(neighbours, Popularity(interactions))
