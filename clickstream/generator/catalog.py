"""The games catalog: what the lobby shows and players play (items, for Personalize).

Shared by the clickstream generator, the batch datasets and the PAM database seed, so it is a plain
data API: :class:`Game`, :class:`Catalog`, :func:`generate_catalog`, and a JSON form of both.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, Literal

Volatility = Literal["low", "medium", "high"]

CATEGORIES: Final = ("slots", "live-casino", "table", "crash", "bingo", "jackpot", "instant-win", "poker")
#: How common each category is in a catalog (slots dominate real ones).
CATEGORY_WEIGHTS: Final = (55, 12, 8, 5, 5, 7, 5, 3)
PROVIDERS: Final = (
    "Northlight Studios",
    "Red Fern Gaming",
    "Bluewave Interactive",
    "Copperhead Games",
    "Lanternfish",
    "Oakridge Play",
    "Stormglass",
    "Kestrel Live",
    "Twelve Tides",
    "Quartzline",
    "Emberforge",
    "Polar Bear Labs",
)
VOLATILITIES: Final[tuple[Volatility, ...]] = ("low", "medium", "high")
#: Countries (ISO 3166-1 alpha-2) the operator is licensed in; a game is approved in a subset.
JURISDICTIONS: Final = ("GB", "IE", "MT", "SE", "DK", "FI", "DE", "NL", "ES", "IT", "CA", "NZ")
#: Zipf exponent of the popularity skew: the weight of the game ranked r is 1 / r**s.
ZIPF_EXPONENT: Final = 1.1
#: Default day the catalog is "as of": release dates are before it, trending games shortly before.
DEFAULT_AS_OF: Final = date(2026, 11, 1)

_EARLIEST_RELEASE = date(2012, 1, 1)
_ADJECTIVES = (
    "Golden", "Lucky", "Wild", "Mega", "Mystic", "Frozen", "Blazing", "Royal", "Ancient", "Cosmic",
    "Neon", "Jade", "Thunder", "Crystal", "Midnight", "Savage", "Sugar", "Viking", "Emerald", "Iron",
)  # fmt: skip
_NOUNS = (
    "Fortune", "Riches", "Gems", "Treasure", "Empire", "Quest", "Legends", "Vault", "Jungle", "Pyramid",
    "Fruits", "Wolves", "Nights", "Kingdom", "Dragons", "Pearls", "Safari", "Harbour", "Comet", "Tiger",
)  # fmt: skip
_TITLE_SHAPES: Mapping[str, tuple[str, ...]] = {
    "slots": ("{a} {n}", "{a} {n} Megaways", "{n} Deluxe", "{a} {n} Hold & Win", "{n} of the {a}"),
    "live-casino": ("{a} Live Roulette", "Live {a} Blackjack", "{a} Baccarat Live", "{n} Live Game Show"),
    "table": ("{a} Blackjack", "European Roulette {n}", "{a} Baccarat", "{a} Hi-Lo"),
    "crash": ("{n} X", "{a} Rocket", "{a} Crash", "Aviator {n}"),
    "bingo": ("{a} Bingo 90", "{a} Bingo 75", "{n} Bingo"),
    "jackpot": ("{a} {n} Jackpot", "{n} Mega Jackpot", "{a} Progressive"),
    "instant-win": ("{a} Scratch", "{n} Scratchcard", "{a} Instant {n}"),
    "poker": ("{a} Hold'em", "{n} Video Poker", "{a} Three Card Poker"),
}
_RTP_RANGE: Mapping[str, tuple[float, float]] = {
    "slots": (0.90, 0.97),
    "live-casino": (0.95, 0.99),
    "table": (0.96, 0.99),
    "crash": (0.95, 0.99),
    "bingo": (0.90, 0.95),
    "jackpot": (0.90, 0.95),
    "instant-win": (0.90, 0.96),
    "poker": (0.96, 0.99),
}


@dataclass(frozen=True, slots=True)
class Game:
    """One game of the catalog.

    ``popularity`` is the game's base weight in a Zipf-like skew (the most popular game has 1.0);
    ``trend_per_day`` > 0 marks a trending game, whose weight grows by that fraction of its base
    weight per day (see :meth:`weight_at`).
    """

    game_id: str
    title: str
    provider: str
    category: str
    volatility: Volatility
    rtp: float
    release_date: date
    jurisdictions: tuple[str, ...]
    enabled: bool = True
    popularity: float = 1.0
    trend_per_day: float = 0.0

    @property
    def trending(self) -> bool:
        return self.trend_per_day > 0

    def weight_at(self, days: float) -> float:
        """Relative chance of being played ``days`` after the start of a simulation (0 if disabled)."""
        if not self.enabled:
            return 0.0
        return self.popularity * (1.0 + self.trend_per_day * max(days, 0.0))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (release date as ``YYYY-MM-DD``); :meth:`from_json` reads it back."""
        return {
            "game_id": self.game_id,
            "title": self.title,
            "provider": self.provider,
            "category": self.category,
            "volatility": self.volatility,
            "rtp": self.rtp,
            "release_date": self.release_date.isoformat(),
            "jurisdictions": list(self.jurisdictions),
            "enabled": self.enabled,
            "popularity": self.popularity,
            "trending": self.trending,
            "trend_per_day": self.trend_per_day,
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Game:
        """The game of one :meth:`to_json` dict; KeyError/ValueError when a field is missing or wrong."""
        volatility = str(item["volatility"])
        if volatility not in VOLATILITIES:
            raise ValueError(f"unknown volatility {volatility!r}")
        return cls(
            game_id=str(item["game_id"]),
            title=str(item["title"]),
            provider=str(item["provider"]),
            category=str(item["category"]),
            volatility=volatility,
            rtp=float(item["rtp"]),
            release_date=date.fromisoformat(str(item["release_date"])),
            jurisdictions=tuple(str(j) for j in item["jurisdictions"]),
            enabled=bool(item.get("enabled", True)),
            popularity=float(item.get("popularity", 1.0)),
            trend_per_day=float(item.get("trend_per_day", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Catalog:
    """An ordered, immutable set of games with unique ids."""

    games: tuple[Game, ...]
    as_of: date = DEFAULT_AS_OF
    _by_id: Mapping[str, Game] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {game.game_id: game for game in self.games}
        if len(by_id) != len(self.games):
            raise ValueError("game ids in a catalog must be unique")
        object.__setattr__(self, "_by_id", by_id)

    def __len__(self) -> int:
        return len(self.games)

    def __iter__(self) -> Iterator[Game]:
        return iter(self.games)

    def __contains__(self, game_id: object) -> bool:
        return game_id in self._by_id

    def get(self, game_id: str) -> Game | None:
        return self._by_id.get(game_id)

    def __getitem__(self, game_id: str) -> Game:
        return self._by_id[game_id]

    @property
    def enabled(self) -> tuple[Game, ...]:
        return tuple(g for g in self.games if g.enabled)

    @property
    def trending(self) -> tuple[Game, ...]:
        return tuple(g for g in self.games if g.trending)

    def to_json(self) -> list[dict[str, Any]]:
        """The games as JSON-ready dicts, in catalog order."""
        return [game.to_json() for game in self.games]

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]], *, as_of: date = DEFAULT_AS_OF) -> Catalog:
        """The catalog of a :meth:`to_json` list."""
        return cls(tuple(Game.from_json(item) for item in items), as_of=as_of)


def _title(rng: random.Random, category: str, taken: set[str]) -> str:
    shapes = _TITLE_SHAPES[category]
    for _ in range(20):
        title = rng.choice(shapes).format(a=rng.choice(_ADJECTIVES), n=rng.choice(_NOUNS))
        if title not in taken:
            return title
    base = rng.choice(shapes).format(a=rng.choice(_ADJECTIVES), n=rng.choice(_NOUNS))
    suffix = 2
    while f"{base} {suffix}" in taken:
        suffix += 1
    return f"{base} {suffix}"


def generate_catalog(
    n_games: int,
    seed: int,
    *,
    as_of: date = DEFAULT_AS_OF,
    trending_fraction: float = 0.03,
    disabled_fraction: float = 0.04,
) -> Catalog:
    """A deterministic catalog of ``n_games`` games (same arguments, same catalog).

    Ids are ``g-00001``... in catalog order. Popularity follows a Zipf-like skew over a random ranking;
    about ``trending_fraction`` of the games (at least one) are recent releases from the unpopular tail
    whose weight grows over time; about ``disabled_fraction`` are disabled (never shown or played).
    """
    if n_games < 1:
        raise ValueError("n_games must be at least 1")
    if not 0.0 <= trending_fraction <= 1.0 or not 0.0 <= disabled_fraction < 1.0:
        raise ValueError("trending_fraction and disabled_fraction must be fractions")
    rng = random.Random(seed)
    width = max(5, len(str(n_games)))
    ranks = list(range(1, n_games + 1))
    rng.shuffle(ranks)
    n_trending = max(1, round(n_games * trending_fraction)) if n_games > 1 else 0
    # Trending games come from the less popular half: their rise is what makes them trending.
    tail = [i for i, rank in enumerate(ranks) if rank > n_games // 2]
    trending_at = set(rng.sample(tail, min(n_trending, len(tail))))
    span_days = (as_of - _EARLIEST_RELEASE).days
    taken: set[str] = set()
    games: list[Game] = []
    for index, rank in enumerate(ranks):
        category = rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
        title = _title(rng, category, taken)
        taken.add(title)
        low, high = _RTP_RANGE[category]
        trending = index in trending_at
        if trending:
            released = as_of - timedelta(days=rng.randint(3, 45))
        else:
            # Skewed to recent years: catalogs grow.
            released = _EARLIEST_RELEASE + timedelta(days=int(span_days * rng.random() ** 0.6))
        n_jurisdictions = rng.randint(4, len(JURISDICTIONS))
        jurisdictions = tuple(sorted(rng.sample(JURISDICTIONS, n_jurisdictions)))
        games.append(
            Game(
                game_id=f"g-{index + 1:0{width}d}",
                title=title,
                provider=rng.choice(PROVIDERS),
                category=category,
                volatility=rng.choice(VOLATILITIES),
                rtp=round(rng.uniform(low, high), 4),
                release_date=released,
                jurisdictions=jurisdictions,
                enabled=trending or rng.random() >= disabled_fraction,
                popularity=1.0 / rank**ZIPF_EXPONENT,
                trend_per_day=round(rng.uniform(0.5, 2.0), 3) if trending else 0.0,
            )
        )
    return Catalog(tuple(games), as_of=as_of)
