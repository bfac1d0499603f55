"""Popularity-Count (``aws-popularity-count``): the items with the most distinct users, the same for all.

No hyperparameters, no scores (as the real recipe), not updated by streamed events until retrained.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from devstack.personalize.recipes.base import Interaction, Model, Popularity, ScoredItem


class PopularityModel(Model):
    """Items by distinct users, most first."""

    def __init__(self, popularity: Popularity) -> None:
        self.popularity = popularity

    def ranked(self, *, user_id: str | None = None, item_id: str | None = None) -> Iterator[ScoredItem]:
        return ((other, None) for other in self.popularity.order if other != item_id)


def train(interactions: Sequence[Interaction]) -> PopularityModel:
    """Count distinct users per item."""
    return PopularityModel(Popularity(interactions))
