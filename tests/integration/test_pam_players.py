"""The lobby's player lookup (:class:`pam.api.dependencies.players.PlayerDirectory`), which runs its one query
on the DBAPI connection directly: same answers as the ORM on SQLite and PostgreSQL, on the event loop and
on a thread pool, and a failed query leaves the directory usable."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from pam.api.dependencies.players import RECENT_SESSIONS, PlayerDirectory, PlayerProfile
from pam.db.engine import create_platform_engine
from pam.db.migrate import upgrade
from pam.db.models import Game, GameSession, Player

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
GAMES = [f"g-{n:02d}" for n in range(1, 15)]
#: (player, game, hours ago): p-many replays games and has more sessions than the query reads.
HISTORY = [
    ("p-many", "g-01", 30),
    ("p-many", "g-02", 20),
    ("p-many", "g-01", 10),  # g-01 again, newer: it comes first, once
    ("p-many", "g-03", 5),
    *[("p-many", GAMES[3 + n], 40 + n) for n in range(RECENT_SESSIONS)],
    ("p-one", "g-09", 2),
]


def fill(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(Game),
            [
                {
                    "id": game_id,
                    "title": f"Title {game_id}",
                    "provider": "Northlight Studios",
                    "category": "slots",
                    "volatility": "low",
                    "rtp": 0.96,
                    "release_date": date(2024, 1, 1),
                    "jurisdictions": ["SE"],
                    "enabled": True,
                }
                for game_id in GAMES
            ],
        )
        connection.execute(
            insert(Player),
            [
                {"id": player_id, "country": country, "platform": "web", "currency": "EUR", "created_at": NOW}
                for player_id, country in (("p-many", "SE"), ("p-one", "MT"), ("p-cold", "DE"))
            ],
        )
        connection.execute(
            insert(GameSession),
            [
                {
                    "player_id": player_id,
                    "game_id": game_id,
                    "session_id": f"s-{index}",
                    "started_at": NOW - timedelta(hours=hours),
                    "ended_at": NOW - timedelta(hours=hours) + timedelta(minutes=5),
                    "rounds": 3,
                    "total_stake": 3,
                    "total_win": 1,
                    "first_stake": 1,
                    "currency": "EUR",
                }
                for index, (player_id, game_id, hours) in enumerate(HISTORY)
            ],
        )


def orm_profile(engine: Engine, player_id: str) -> PlayerProfile:
    """What the lookup must answer, the slow and obvious way."""
    with engine.connect() as connection:
        country = connection.execute(select(Player.country).where(Player.id == player_id)).scalar()
        if country is None:
            return PlayerProfile(player_id, known=False)
        games = connection.execute(
            select(GameSession.game_id)
            .where(GameSession.player_id == player_id)
            .order_by(GameSession.started_at.desc())
            .limit(RECENT_SESSIONS)
        ).scalars()
        return PlayerProfile(player_id, known=True, country=country, recent_game_ids=tuple(dict.fromkeys(games)))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform.db'}"
    else:
        yield request.getfixturevalue("postgres_database")


@pytest.mark.parametrize("threads", [0, 2])
def test_lookup_answers_as_the_orm_does(database_url: str, threads: int) -> None:
    upgrade(database_url)
    engine = create_platform_engine(database_url)
    fill(engine)
    directory = PlayerDirectory(create_platform_engine(database_url), threads=threads)
    try:

        async def lookups() -> list[PlayerProfile]:
            return list(await asyncio.gather(*(directory.lookup(p) for p in ("p-many", "p-one", "p-cold", "nobody"))))

        many, one, cold, nobody = asyncio.run(lookups())
        assert many == orm_profile(engine, "p-many")
        assert many.country == "SE"
        assert many.recent_game_ids[:3] == ("g-03", "g-01", "g-02")  # newest first, g-01 once
        assert len(many.recent_game_ids) < RECENT_SESSIONS  # the repeat took one of the rows read
        assert one == orm_profile(engine, "p-one") == PlayerProfile("p-one", True, "MT", ("g-09",))
        assert cold == orm_profile(engine, "p-cold") == PlayerProfile("p-cold", True, "DE", ())
        assert nobody == PlayerProfile("nobody", known=False)
    finally:
        directory.close()
        engine.dispose()


def test_the_country_is_read_trimmed_and_upper_case_and_a_blank_one_is_unknown(database_url: str) -> None:
    upgrade(database_url)
    engine = create_platform_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(Player),
            [
                {"id": player_id, "country": country, "platform": "web", "currency": "EUR", "created_at": NOW}
                for player_id, country in (("p-lower", "se"), ("p-blank", "  "), ("p-empty", ""))
            ],
        )
    engine.dispose()
    directory = PlayerDirectory(create_platform_engine(database_url), threads=0)
    try:
        profiles = [asyncio.run(directory.lookup(p)) for p in ("p-lower", "p-blank", "p-empty")]
        assert [profile.country for profile in profiles] == ["SE", None, None]
        assert all(profile.known for profile in profiles)
    finally:
        directory.close()


def test_a_failed_query_raises_and_the_next_one_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    directory = PlayerDirectory(create_platform_engine(url), threads=0)
    try:
        with pytest.raises(sqlite3.OperationalError):  # no schema yet
            asyncio.run(directory.lookup("p-one"))
        upgrade(url)
        engine = create_platform_engine(url)
        fill(engine)
        engine.dispose()
        assert asyncio.run(directory.lookup("p-one")) == PlayerProfile("p-one", True, "MT", ("g-09",))
    finally:
        directory.close()
