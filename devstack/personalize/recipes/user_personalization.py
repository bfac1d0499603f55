"""User-Personalization (``aws-user-personalization``, ``-v2``) and Personalized-Ranking, item-based.

The model is item-to-item: cosine similarities of co-occurring items (:mod:`.cooccurrence` with a
discount of 0.5 and no minimum count), aggregated over the user's most recent distinct items::

    raw(j) = sum over the last H items h_k of the history (k = 0 most recent): w_k * sim(h_k -> j)
    w_k = 0.3 ** k with recency bias (the default; the latest item outweighs all older ones), else 1

``H`` is ``bptt`` (v1, default 32; v2 uses 32). Scores share a total of 1 over the whole catalog, as the
real recipe's: a small popularity prior (5 % of the mass) keeps every item scored and ranks the items
no neighbour reaches::

    score(j) = (raw(j) + p * share(j)) / (sum(raw) + p),  p = 0.05 * sum(raw) (1 for a user without history)

so a user without history (cold start) gets the popular items, scored by their share of distinct users.
Items the user already interacted with are not excluded: use a filter such as
``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")``, as with the real service.

Streamed events (PutEvents) move the item to the front of the user's history at once, so the next
GetRecommendations for that user reflects what they just did, without retraining.
"""

from __future__ import annotations

import heapq
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
    parse_bool,
)
from devstack.personalize.recipes.cooccurrence import CoOccurrence

#: Neighbours kept per item for aggregation.
NEIGHBOURS_PER_ITEM: Final = 200
#: The popularity prior's share of the score mass for a user with history.
POPULARITY_PRIOR: Final = 0.05
RECENCY_DECAY: Final = 0.3


@dataclass(frozen=True, slots=True)
class UserPersonalizationParameters:
    """How much of the history counts and whether recent items weigh more."""

    history_length: int = 32
    recency_bias: bool = True

    @classmethod
    def parse(cls, config: Mapping[str, str], *, version: int) -> UserPersonalizationParameters:
        """v1: ``bptt`` and ``recency_mask``; v2: ``apply_recency_bias`` (real hyperparameter names)."""
        if version == 1:
            return cls(
                history_length=parameter(config, "bptt", 32, int, lowest=2, highest=256),
                recency_bias=parameter(config, "recency_mask", True, parse_bool),
            )
        return cls(recency_bias=parameter(config, "apply_recency_bias", True, parse_bool))


class UserPersonalizationModel(Model):
    """Neighbours per item, each user's history (updated by streamed events), a popularity prior."""

    scored = True
    realtime = True

    def __init__(
        self,
        neighbours: dict[str, list[tuple[str, float]]],
        popularity: Popularity,
        user_histories: dict[str, list[str]],
        params: UserPersonalizationParameters,
    ) -> None:
        self.neighbours = neighbours
        self.popularity = popularity
        self.histories = user_histories
        self.params = params

    def observe(self, interaction: Interaction) -> None:
        history = self.histories.setdefault(interaction.user_id, [])
        if history and history[-1] == interaction.item_id:
            return
        if interaction.item_id in history:
            history.remove(interaction.item_id)
        history.append(interaction.item_id)
        limit = max(self.params.history_length * 4, 64)
        if len(history) > limit:
            del history[: len(history) - limit]

    def raw_scores(self, user_id: str | None) -> dict[str, float]:
        """``raw(j)`` of the module's formula for every item some recent item of the user reaches."""
        history = self.histories.get(user_id or "", [])[-self.params.history_length :]
        decay = RECENCY_DECAY if self.params.recency_bias else 1.0
        raw: dict[str, float] = {}
        weight = 1.0
        for item_id in reversed(history):
            for other, similarity in self.neighbours.get(item_id, ()):
                raw[other] = raw.get(other, 0.0) + weight * similarity
            weight *= decay
        return raw

    def scores(self, user_id: str | None) -> tuple[dict[str, float], float, float]:
        """(raw scores, prior mass ``p``, normaliser ``sum(raw) + p``)."""
        raw = self.raw_scores(user_id)
        total = sum(raw.values())
        prior = POPULARITY_PRIOR * total if total > 0 else 1.0
        return raw, prior, total + prior

    def ranked(self, *, user_id: str | None = None, item_id: str | None = None) -> Iterator[ScoredItem]:
        raw, prior, norm = self.scores(user_id)
        share = self.popularity.share
        reached = sorted(
            (((value + prior * share(other)) / norm, other) for other, value in raw.items() if other != item_id),
            key=lambda pair: (-pair[0], pair[1]),
        )
        rest = (
            (prior * share(other) / norm, other)
            for other in self.popularity.order
            if other not in raw and other != item_id
        )
        merged = heapq.merge(reached, rest, key=lambda pair: -pair[0])
        return ((other, score) for score, other in merged)

    def rank(self, user_id: str, item_ids: Sequence[str]) -> list[ScoredItem]:
        """Personalized ranking: ``item_ids`` by score, scores renormalised to sum to 1 over them."""
        raw, prior, _ = self.scores(user_id)
        share = self.popularity.share
        values = {item: raw.get(item, 0.0) + prior * share(item) for item in dict.fromkeys(item_ids)}
        total = sum(values.values())
        ordered = sorted(values, key=lambda item: (-values[item], item))
        return [(item, values[item] / total if total > 0 else 0.0) for item in ordered]


def train(interactions: Sequence[Interaction], params: UserPersonalizationParameters) -> UserPersonalizationModel:
    """Cosine neighbours from the histories, plus the histories themselves for recommending."""
    user_histories = histories(interactions)
    neighbours = CoOccurrence.count(user_histories).neighbours(discount=0.5, min_count=1, limit=NEIGHBOURS_PER_ITEM)
    return UserPersonalizationModel(neighbours, Popularity(interactions), user_histories, params)
