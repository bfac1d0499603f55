"""Players (users, for Personalize): where they play from, on what, and what they like."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from clickstream.generator.catalog import CATEGORIES, CATEGORY_WEIGHTS, JURISDICTIONS

Platform = Literal["ios", "android", "web", "desktop"]

PLATFORMS: Final[tuple[Platform, ...]] = ("ios", "android", "web", "desktop")
PLATFORM_WEIGHTS: Final = (35, 35, 20, 10)
#: How players spread over the operator's countries (same order as ``JURISDICTIONS``).
COUNTRY_WEIGHTS: Final = (40, 5, 3, 12, 4, 4, 8, 6, 6, 5, 5, 2)
CURRENCIES: Final[Mapping[str, str]] = {
    "GB": "GBP",
    "SE": "SEK",
    "DK": "DKK",
    "CA": "CAD",
    "NZ": "NZD",
}
#: Stake ladder in the player's currency units; a player sticks to a few neighbouring steps.
STAKE_STEPS: Final = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
#: Zipf exponent of how often players come back: a few regulars, a long tail of occasional players.
ACTIVITY_EXPONENT: Final = 0.8


def currency_of(country: str) -> str:
    """The currency players of ``country`` bet in (EUR unless listed in :data:`CURRENCIES`)."""
    return CURRENCIES.get(country, "EUR")


@dataclass(frozen=True, slots=True)
class Player:
    """One registered player; ``activity`` is the relative chance that the next session is theirs."""

    player_id: str
    country: str
    platform: Platform
    preferred_categories: tuple[str, ...]
    stake_level: int
    activity: float

    @property
    def currency(self) -> str:
        return currency_of(self.country)

    def to_json(self) -> dict[str, Any]:
        return {
            "player_id": self.player_id,
            "country": self.country,
            "platform": self.platform,
            "preferred_categories": list(self.preferred_categories),
            "currency": self.currency,
            "stake_level": self.stake_level,
            "activity": self.activity,
        }


def player_id(number: int, width: int = 6) -> str:
    """The id of player ``number``: ``p-000123``."""
    return f"p-{number:0{width}d}"


def generate_players(n_players: int, seed: int) -> list[Player]:
    """``n_players`` deterministic players with ids ``p-000001``... (same arguments, same players)."""
    if n_players < 1:
        raise ValueError("n_players must be at least 1")
    rng = random.Random(seed)
    width = max(6, len(str(n_players)))
    ranks = list(range(1, n_players + 1))
    rng.shuffle(ranks)
    players: list[Player] = []
    for number, rank in enumerate(ranks, start=1):
        n_preferred = rng.choice((1, 1, 2, 2, 3))
        preferred: list[str] = []
        while len(preferred) < n_preferred:
            category = rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
            if category not in preferred:
                preferred.append(category)
        players.append(
            Player(
                player_id=player_id(number, width),
                country=rng.choices(JURISDICTIONS, weights=COUNTRY_WEIGHTS)[0],
                platform=rng.choices(PLATFORMS, weights=PLATFORM_WEIGHTS)[0],
                preferred_categories=tuple(preferred),
                stake_level=min(len(STAKE_STEPS) - 3, int(rng.expovariate(0.5))),
                activity=1.0 / rank**ACTIVITY_EXPONENT,
            )
        )
    return players
