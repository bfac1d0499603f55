"""One player session as the game app reports it: a time-ordered sequence of raw events.

A session logs in, views the lobby, sometimes searches, clicks a tile, launches the game, plays rounds
(bets and results every few seconds), sometimes favourites it, exits, and goes back to the lobby for
the next game; heartbeats tick throughout. Every event is valid under ``clickstream.raw.RawEvent``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from clickstream.generator.catalog import Catalog, Game
from clickstream.generator.config import GeneratorConfig
from clickstream.generator.lobby import RECOMMENDED_SECTIONS, Lobby
from clickstream.generator.players import STAKE_STEPS, Player

TimestampFormat = Literal["iso", "epoch_seconds", "epoch_millis"]
TIMESTAMP_FORMATS: Final[tuple[TimestampFormat, ...]] = ("iso", "epoch_seconds", "epoch_millis")

#: Seconds between rounds, by category: (shortest, longest).
ROUND_SECONDS: Final = {
    "slots": (3.0, 8.0),
    "jackpot": (3.0, 8.0),
    "instant-win": (4.0, 10.0),
    "crash": (10.0, 25.0),
    "live-casino": (25.0, 50.0),
    "table": (12.0, 30.0),
    "poker": (15.0, 40.0),
    "bingo": (60.0, 120.0),
}
#: Categories where a bet is placed before the round is played out (bet_placed, then game_round).
BET_FIRST: Final = frozenset({"live-casino", "table", "poker", "crash"})
#: Chance that a round pays anything, by volatility.
HIT_RATE: Final = {"low": 0.45, "medium": 0.3, "high": 0.15}
DEPOSIT_AMOUNTS: Final = (10, 20, 25, 50, 100, 200, 500)
SEARCH_WORDS: Final = ("gold", "wild", "live", "roulette", "mega", "dragon", "bingo", "jackpot", "fruit")

#: Tiles of a lobby row visible without scrolling.
VISIBLE_TILES: Final = 4

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def client_uuid(rng: random.Random) -> str:
    """A random (version 4 shaped) UUID string drawn from ``rng``: deterministic for a seeded rng."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def to_camel(key: str) -> str:
    """``duration_ms`` -> ``durationMs``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def render_timestamp(millis: int, kind: TimestampFormat, *, offset_style: bool = False) -> str | int | float:
    """``millis`` (epoch ms, UTC) as a client sends it: ISO-8601 with ms, epoch seconds or epoch ms."""
    if kind == "epoch_millis":
        return millis
    if kind == "epoch_seconds":
        return millis / 1000
    moment = _EPOCH + timedelta(milliseconds=millis)
    zone = "+00:00" if offset_style else "Z"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}{zone}"


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who is playing a session: a registered player, or an anonymous visitor (``player`` None)."""

    player: Player | None
    country: str
    platform: str
    currency: str
    preferred_categories: tuple[str, ...]
    stake_level: int


@dataclass(slots=True)
class _Row:
    section: str
    games: list[str]
    recommendation_id: str | None


class SessionScript:
    """Plays one session with its own rng and yields ``(epoch_ms, event)`` pairs in time order.

    Time never goes backwards and two events of a session never share a millisecond, except a client
    retry, which repeats an event exactly.
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        lobby: Lobby,
        config: GeneratorConfig,
        visitor: Visitor,
        rng: random.Random,
        start_ms: int,
        origin_ms: int,
    ) -> None:
        self.catalog = catalog
        self.lobby = lobby
        self.config = config
        self.visitor = visitor
        self.rng = rng
        self.origin_ms = origin_ms
        self.session_id = client_uuid(rng)
        self.camel = rng.random() < config.camel_case_fraction
        formats = rng.choices(TIMESTAMP_FORMATS, weights=config.timestamp_mix)
        self.timestamp_format: TimestampFormat = formats[0]
        self.offset_style = rng.random() < 0.3
        self._now = start_ms
        self._last_emitted = start_ms - 1
        self._next_heartbeat = start_ms + self._seconds(config.heartbeat_seconds)
        self._current_game: str | None = None
        self._favorites: list[str] = []
        self._last_played: Game | None = None

    # --- time and emission -------------------------------------------------------------------------

    @staticmethod
    def _seconds(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    def _wait(self, low: float, high: float) -> None:
        self._now += self._seconds(self.rng.uniform(low, high))

    def _days(self) -> float:
        return (self._now - self.origin_ms) / 86_400_000

    def _event(self, at: int, event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        body: dict[str, Any] = {}
        if rng.random() < self.config.event_id_fraction:
            body["event_id"] = client_uuid(rng)
        body["event_type"] = event_type
        body["timestamp"] = render_timestamp(at, self.timestamp_format, offset_style=self.offset_style)
        if self.visitor.player is not None:
            body["player_id"] = self.visitor.player.player_id
        body["session_id"] = self.session_id
        for key, value in fields.items():
            if value is not None:
                body[key] = value
        if self.camel:
            return {to_camel(key): value for key, value in body.items()}
        return body

    def _emit(self, event_type: str, **fields: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        """Due heartbeats, then the event at the current time; sometimes a retry of it."""
        beat = self._seconds(self.config.heartbeat_seconds)
        while self._next_heartbeat < self._now:
            at = max(self._next_heartbeat, self._last_emitted + 1)
            self._last_emitted = at
            yield at, self._event(at, "heartbeat", {"game_id": self._current_game})
            self._next_heartbeat += beat
        at = max(self._now, self._last_emitted + 1)
        self._now = self._last_emitted = at
        event = self._event(at, event_type, fields)
        yield at, event
        has_id = "event_id" in event or "eventId" in event
        if has_id and self.rng.random() < self.config.duplicate_fraction:
            yield at, dict(event)

    # --- the session -------------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The whole session, lazily."""
        rng, config, visitor = self.rng, self.config, self.visitor
        known = visitor.player is not None
        if known:
            yield from self._emit("login", platform=visitor.platform, country=visitor.country)
            self._wait(0.5, 3.0)
        if known and rng.random() < config.deposit_probability:
            yield from self._deposit()
        n_games = min(config.max_games_per_session, _count(rng, config.games_per_session_mean))
        for _ in range(n_games):
            rows = self._lobby_rows()
            if not rows:
                break
            yield from self._emit(
                "lobby_view",
                lobby_section="home",
                # What the first screen shows: the first tiles of the first rows.
                impression=list(dict.fromkeys(g for row in rows[:3] for g in row.games[:VISIBLE_TILES])),
                platform=visitor.platform,
                country=visitor.country,
            )
            self._wait(2.0, 20.0)
            if rng.random() < config.search_probability:
                search_row = yield from self._search()
                if search_row is not None:
                    rows = [search_row]
            yield from self._play(rng.choices(rows, weights=[_row_weight(r.section) for r in rows])[0])
            self._wait(2.0, 15.0)
            if known and rng.random() < config.deposit_probability / 3:
                yield from self._deposit()
        if known and rng.random() < 0.4:
            yield from self._emit("logout")

    def _deposit(self) -> Iterator[tuple[int, dict[str, Any]]]:
        amount = self.rng.choice(DEPOSIT_AMOUNTS) * (10 if self.visitor.currency in ("SEK", "DKK") else 1)
        yield from self._emit("deposit", amount=amount, currency=self.visitor.currency)
        self._wait(1.0, 5.0)

    def _lobby_rows(self) -> list[_Row]:
        rng, visitor, days = self.rng, self.visitor, self._days()
        rows: list[_Row] = []

        def add(section: str, kind: str) -> None:
            shelf = self.lobby.shelf(visitor.country, days, kind)
            if shelf is None:
                return
            games = shelf.sample(rng, rng.randint(6, 10))
            if not games:
                return
            rid = None
            if section in RECOMMENDED_SECTIONS and rng.random() < self.config.recommendation_fraction:
                rid = "RID-" + client_uuid(rng)
            rows.append(_Row(section, games, rid))

        if visitor.player is not None:
            add("for-you", visitor.preferred_categories[0])
        if self._last_played is not None:
            add("because-you-played", self._last_played.category)
        add("popular", "all")
        add("trending", "trending")
        add("new-releases", "new")
        for category in visitor.preferred_categories:
            add(category, category)
        return rows

    def _search(self) -> Generator[tuple[int, dict[str, Any]], None, _Row | None]:
        rng, visitor = self.rng, self.visitor
        shelf = self.lobby.shelf(visitor.country, self._days(), "all")
        query = rng.choice(SEARCH_WORDS)
        results = shelf.sample(rng, rng.randint(0, 12)) if shelf is not None else []
        yield from self._emit(
            "search",
            query=query,
            lobby_section="search",
            impression=results or None,
            results_count=len(results),
            platform=visitor.platform,
        )
        self._wait(2.0, 10.0)
        return _Row("search", results, None) if results else None

    def _play(self, row: _Row) -> Iterator[tuple[int, dict[str, Any]]]:
        rng, config, visitor = self.rng, self.config, self.visitor
        weights = [1.0 / (index + 1) ** 0.8 for index in range(len(row.games))]
        position = rng.choices(range(1, len(row.games) + 1), weights=weights)[0]
        game = self.catalog[row.games[position - 1]]
        context = {"platform": visitor.platform, "country": visitor.country}
        yield from self._emit(
            "game_tile_click",
            game_id=game.game_id,
            lobby_section=row.section,
            position=position,
            recommendation_id=row.recommendation_id,
            # The row's tiles the player has seen: scrolled as far as the clicked one, plus a few.
            impression=row.games[: max(VISIBLE_TILES, position + 2)],
            **context,
        )
        self._wait(0.3, 2.5)
        yield from self._emit(
            "game_launch", game_id=game.game_id, lobby_section=row.section, position=position, **context
        )
        launched = self._now
        self._current_game = game.game_id
        self._wait(2.0, 8.0)
        yield from self._rounds(game)
        if rng.random() < config.favorite_probability:
            yield from self._emit("favorite_added", game_id=game.game_id, lobby_section=row.section, **context)
            self._favorites.append(game.game_id)
            self._wait(1.0, 4.0)
        yield from self._emit("game_exit", game_id=game.game_id, duration_ms=self._now - launched)
        self._current_game = None
        self._last_played = game
        if self._favorites and rng.random() < config.unfavorite_probability:
            removed = self._favorites.pop(rng.randrange(len(self._favorites)))
            self._wait(2.0, 8.0)
            yield from self._emit("favorite_removed", game_id=removed, lobby_section="favorites", **context)

    def _rounds(self, game: Game) -> Iterator[tuple[int, dict[str, Any]]]:
        rng, config, visitor = self.rng, self.config, self.visitor
        n_rounds = min(config.max_rounds_per_game, _count(rng, config.rounds_per_game_mean))
        low, high = ROUND_SECONDS.get(game.category, (3.0, 10.0))
        level = max(0, min(len(STAKE_STEPS) - 1, visitor.stake_level + rng.choice((-1, 0, 0, 1))))
        for _ in range(n_rounds):
            step = max(0, min(len(STAKE_STEPS) - 1, level + (rng.choice((-1, 1)) if rng.random() < 0.1 else 0)))
            stake = STAKE_STEPS[step]
            if game.category in BET_FIRST:
                yield from self._emit("bet_placed", game_id=game.game_id, stake=stake, currency=visitor.currency)
                self._wait(low * 0.6, high * 0.6)
            win = _win(rng, game, stake)
            yield from self._emit("game_round", game_id=game.game_id, stake=stake, win=win, currency=visitor.currency)
            self._wait(low, high)


def _count(rng: random.Random, mean: float) -> int:
    """At least 1, about ``mean`` on average, with a long tail (1 + an exponential draw)."""
    extra = mean - 1.0
    return 1 + (round(rng.expovariate(1.0 / extra)) if extra > 0 else 0)


def _row_weight(section: str) -> float:
    return {"for-you": 3.0, "because-you-played": 2.0, "popular": 3.0, "trending": 2.0, "search": 1.0}.get(section, 1.0)


def _win(rng: random.Random, game: Game, stake: float) -> float:
    """A round's payout: zero most of the time, with a mean of ``stake * rtp``."""
    hit = HIT_RATE[game.volatility]
    if rng.random() >= hit:
        return 0.0
    mean_multiplier = game.rtp / hit
    if game.volatility == "high":
        # Heavy tail: a Pareto with shape 1.5 has mean 3; rescale to the wanted mean.
        multiplier = rng.paretovariate(1.5) * mean_multiplier / 3.0
    else:
        multiplier = rng.expovariate(1.0 / mean_multiplier)
    return round(stake * multiplier, 2)
