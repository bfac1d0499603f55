"""Seed the platform database from the clickstream generator: a catalog, players and months of play.

The games and players are ``clickstream.generator``'s; the play history is what the generated
clickstream leaves on the platform (:mod:`pam.db.play_history`), written in chunks with executemany
inserts as the events stream by, so a seed of any size runs in flat memory.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, delete, func, insert, select

from clickstream.generator import Catalog, Player, generate_catalog, generate_events, generate_players
from clickstream.generator.records import event_millis
from pam.db.migrate import current_revision, head_revision
from pam.db.models import Favorite, Game, GameSession
from pam.db.models import Player as PlayerRow
from pam.db.play_history import GameSessionRecord, PlayHistoryRecorder

DAY_SECONDS: Final = 86_400.0
#: Players registered up to this many days before the history starts.
REGISTRATION_SPAN_DAYS: Final = 3 * 365


class SeedError(RuntimeError):
    """The database cannot be seeded as asked (not migrated, already seeded, bad plan)."""


@dataclass(frozen=True, slots=True)
class SeedPlan:
    """What to generate. The history covers the ``days`` before midnight (UTC) starting ``end``."""

    players: int = 2000
    sessions: int = 20_000
    days: float = 90.0
    games: int = 300
    seed: int = 0
    end: date = field(default_factory=lambda: datetime.now(UTC).date())
    chunk_size: int = 5000

    def __post_init__(self) -> None:
        for name in ("players", "sessions", "games", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.days > 0:
            raise ValueError("days must be positive")

    @property
    def end_time(self) -> float:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC).timestamp()

    @property
    def start_time(self) -> float:
        return self.end_time - self.days * DAY_SECONDS


@dataclass(frozen=True, slots=True)
class SeedProgress:
    """Where a running seed is: simulated time covered and rows written so far."""

    days_done: float
    days_total: float
    events: int
    game_sessions: int


@dataclass(slots=True)
class SeedSummary:
    """What a seed wrote."""

    games: int = 0
    enabled_games: int = 0
    trending_games: int = 0
    players: int = 0
    events: int = 0
    game_sessions: int = 0
    anonymous_game_sessions: int = 0
    players_with_history: int = 0
    rounds: int = 0
    favorites: int = 0
    first_play: datetime | None = None
    last_play: datetime | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        def when(moment: datetime | None) -> str:
            return "-" if moment is None else moment.isoformat(timespec="seconds")

        skipped = ", ".join(f"{reason} {count}" for reason, count in self.skipped.most_common()) or "none"
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        return [
            f"games:            {self.games} ({self.enabled_games} enabled, {self.trending_games} trending)",
            f"players:          {self.players} ({self.players_with_history} with play history)",
            f"game sessions:    {self.game_sessions} ({self.anonymous_game_sessions} without an account)",
            f"rounds:           {self.rounds}",
            f"favorites:        {self.favorites}",
            f"history:          {when(self.first_play)} .. {when(self.last_play)}",
            f"events folded:    {self.events} ({rate:,.0f}/s); left out: {skipped}",
            f"took:             {self.seconds:.1f} s",
        ]


ProgressCallback = Callable[[SeedProgress], None]


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _game_rows(catalog: Catalog) -> Iterator[dict[str, Any]]:
    for game in catalog:
        yield {
            "id": game.game_id,
            "title": game.title,
            "provider": game.provider,
            "category": game.category,
            "volatility": game.volatility,
            "rtp": game.rtp,
            "release_date": game.release_date,
            "jurisdictions": list(game.jurisdictions),
            "enabled": game.enabled,
        }


def _player_rows(players: Sequence[Player], plan: SeedPlan) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"pam-seed-registrations:{plan.seed}")
    for player in players:
        before = rng.uniform(1.0, REGISTRATION_SPAN_DAYS) * DAY_SECONDS
        yield {
            "id": player.player_id,
            "country": player.country,
            "platform": player.platform,
            "currency": player.currency,
            "created_at": datetime.fromtimestamp(round(plan.start_time - before), UTC),
        }


def check_ready(engine: Engine, *, replace: bool) -> None:
    """Raise :class:`SeedError` unless the schema is current and (without ``replace``) the database empty."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        raise SeedError(
            f"the database schema is at revision {current or 'none'}, not {head}: run `pam db upgrade` first"
        )
    if replace:
        return
    with engine.connect() as connection:
        games = connection.scalar(select(func.count()).select_from(Game)) or 0
    if games:
        raise SeedError(f"the database already holds {games} games: pass --replace to seed it anew")


def _clear(connection: Connection) -> None:
    for model in (Favorite, GameSession, PlayerRow, Game):
        connection.execute(delete(model))


class _HistoryWriter:
    """Buffers game sessions and inserts them ``chunk_size`` at a time, one transaction per chunk."""

    def __init__(self, connection: Connection, chunk_size: int, summary: SeedSummary) -> None:
        self._connection = connection
        self._chunk_size = chunk_size
        self._summary = summary
        self._buffer: list[dict[str, Any]] = []
        self._players: set[str] = set()

    def add(self, records: Iterable[GameSessionRecord]) -> None:
        summary = self._summary
        for record in records:
            self._buffer.append(record.row())
            summary.game_sessions += 1
            summary.rounds += record.rounds
            if record.player_id is None:
                summary.anonymous_game_sessions += 1
            else:
                self._players.add(record.player_id)
            if summary.first_play is None or record.started_at < summary.first_play:
                summary.first_play = record.started_at
            if summary.last_play is None or record.started_at > summary.last_play:
                summary.last_play = record.started_at
        if len(self._buffer) >= self._chunk_size:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._connection.execute(insert(GameSession), self._buffer)
            self._connection.commit()
            self._buffer = []
        self._summary.players_with_history = len(self._players)


def seed_database(
    engine: Engine,
    plan: SeedPlan,
    *,
    replace: bool = False,
    progress: ProgressCallback | None = None,
    progress_every: int = 50_000,
) -> SeedSummary:
    """Fill the (migrated) database at ``engine`` as ``plan`` says; same plan, same rows.

    Raises :class:`SeedError` when the schema is not current or the database is not empty (unless
    ``replace``, which deletes every game, player and their history first). ``progress`` is called
    every ``progress_every`` events and at the end.
    """
    started = time.monotonic()
    check_ready(engine, replace=replace)
    catalog = generate_catalog(plan.games, plan.seed, as_of=plan.end)
    players = generate_players(plan.players, plan.seed)
    summary = SeedSummary(
        games=len(catalog),
        enabled_games=len(catalog.enabled),
        trending_games=len(catalog.trending),
        players=len(players),
    )
    release_dates: Mapping[str, date] = {game.game_id: game.release_date for game in catalog}
    recorder = PlayHistoryRecorder(release_dates, until=plan.end_time)
    events = generate_events(
        catalog,
        n_players=plan.players,
        players=players,
        seed=plan.seed,
        start=plan.start_time,
        n_sessions=plan.sessions,
        duration=plan.days * DAY_SECONDS,
    )

    def report(at: float) -> None:
        if progress is not None:
            done = min(plan.days, max(0.0, (at - plan.start_time) / DAY_SECONDS))
            progress(SeedProgress(done, plan.days, recorder.events, summary.game_sessions))

    with engine.connect() as connection:
        if replace:
            _clear(connection)
            connection.commit()
        for chunk in _chunks(_game_rows(catalog), plan.chunk_size):
            connection.execute(insert(Game), chunk)
        for chunk in _chunks(_player_rows(players, plan), plan.chunk_size):
            connection.execute(insert(PlayerRow), chunk)
        connection.commit()

        writer = _HistoryWriter(connection, plan.chunk_size, summary)
        last_time = plan.start_time
        for event in events:
            writer.add(recorder.add(event))
            if progress is not None and recorder.events % progress_every == 0:
                last_time = _event_time(event, last_time)
                report(last_time)
        writer.add(recorder.finish())
        writer.flush()

        favorites = [favorite.row() for favorite in recorder.favorites()]
        for chunk in _chunks(favorites, plan.chunk_size):
            connection.execute(insert(Favorite), chunk)
        connection.commit()
        summary.favorites = len(favorites)

    summary.events = recorder.events
    summary.skipped = recorder.skipped
    summary.seconds = time.monotonic() - started
    report(plan.end_time)
    return summary


def _event_time(event: Mapping[str, Any], fallback: float) -> float:
    millis = event_millis(event)
    return fallback if millis is None else millis / 1000
