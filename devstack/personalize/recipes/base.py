"""What every local recipe shares: the interaction record, the model interface, popularity and parameters.

A model answers one question: "every candidate item for this query, best first" (:meth:`Model.ranked`),
lazily, so the runtime can apply a filter and stop at ``numResults``. Scores are ``None`` for recipes
whose real counterpart returns none (SIMS, Popularity-Count, Trending-Now).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import ClassVar, NamedTuple, TypeVar

#: One recommended item and its score (``None``: the recipe gives no score).
ScoredItem = tuple[str, float | None]

_T = TypeVar("_T", int, float, bool)


class Interaction(NamedTuple):
    """One user-item interaction: imported from the INTERACTIONS dataset or streamed with PutEvents."""

    user_id: str
    item_id: str
    timestamp: float
    event_type: str = ""
    event_value: float | None = None


class ParameterError(ValueError):
    """A hyperparameter has a value the recipe does not accept (answered as ``InvalidInputException``)."""


class Model(ABC):
    """A trained model. Not thread-safe: the emulator calls it from its event loop only."""

    #: Whether recommendations carry scores (as the real recipe's do).
    scored: ClassVar[bool] = False
    #: Whether :meth:`observe` changes recommendations (streamed events update the model).
    realtime: ClassVar[bool] = False

    @abstractmethod
    def ranked(self, *, user_id: str | None = None, item_id: str | None = None) -> Iterator[ScoredItem]:
        """Every candidate for the query, best first, each item once; never the query item itself."""

    def observe(self, interaction: Interaction) -> None:  # noqa: B027 (a no-op unless the recipe is realtime)
        """Take a streamed interaction into account (no-op unless :attr:`realtime`)."""

    def rank(self, user_id: str, item_ids: Sequence[str]) -> list[ScoredItem]:
        """``item_ids`` reordered for ``user_id``, best first (items the model does not know come last)."""
        wanted = dict.fromkeys(item_ids)
        order: list[ScoredItem] = []
        for item_id, score in self.ranked(user_id=user_id):
            if item_id in wanted:
                order.append((item_id, score))
                del wanted[item_id]
                if not wanted:
                    break
        order.extend((item_id, 0.0 if self.scored else None) for item_id in wanted)
        return order


class Popularity:
    """Distinct users per item, most popular first (ties broken by item id, so results are stable)."""

    def __init__(self, interactions: Iterable[Interaction]) -> None:
        users: dict[str, set[str]] = {}
        for interaction in interactions:
            users.setdefault(interaction.item_id, set()).add(interaction.user_id)
        self.users_per_item: dict[str, int] = {item_id: len(who) for item_id, who in users.items()}
        self.order: list[str] = sorted(self.users_per_item, key=lambda item: (-self.users_per_item[item], item))
        self.total = sum(self.users_per_item.values())

    def share(self, item_id: str) -> float:
        """The item's share of all (user, item) pairs: 0..1, summing to 1 over the catalog."""
        return self.users_per_item.get(item_id, 0) / self.total if self.total else 0.0


def histories(interactions: Iterable[Interaction]) -> dict[str, list[str]]:
    """Each user's distinct items, ordered by their latest interaction (most recent last)."""
    latest: dict[str, dict[str, float]] = {}
    for interaction in interactions:
        items = latest.setdefault(interaction.user_id, {})
        previous = items.get(interaction.item_id)
        if previous is None or interaction.timestamp >= previous:
            items[interaction.item_id] = interaction.timestamp
    return {user: sorted(items, key=lambda item: (items[item], item)) for user, items in latest.items()}


def unique(*sources: Iterable[ScoredItem], exclude: Iterable[str] = ()) -> Iterator[ScoredItem]:
    """Chain ``sources``, skipping items already produced and items in ``exclude``."""
    seen = set(exclude)
    for source in sources:
        for item_id, score in source:
            if item_id not in seen:
                seen.add(item_id)
                yield item_id, score


def percentile_bounds(lengths: Sequence[int], low: float, high: float) -> tuple[int, int]:
    """The history lengths at the ``low`` and ``high`` percentiles (0..1) of ``lengths`` (nearest rank)."""
    if not lengths:
        return 0, 0
    ordered = sorted(lengths)
    last = len(ordered) - 1
    return ordered[min(last, math.floor(low * len(ordered)))], ordered[max(0, math.ceil(high * len(ordered)) - 1)]


def parameter(
    config: Mapping[str, str],
    name: str,
    default: _T,
    parse: Callable[[str], _T],
    *,
    lowest: float | None = None,
    highest: float | None = None,
) -> _T:
    """Read hyperparameter ``name`` (a string, as the API carries them) or raise :class:`ParameterError`."""
    raw = config.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw.strip())
    except ValueError:
        raise ParameterError(f"hyperparameter {name} has an invalid value {raw!r}") from None
    if (lowest is not None and value < lowest) or (highest is not None and value > highest):
        raise ParameterError(f"hyperparameter {name} must be within [{lowest}, {highest}], got {raw!r}")
    return value


def parse_bool(text: str) -> bool:
    """``true``/``false`` (any case), as the API writes booleans in hyperparameters."""
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"
