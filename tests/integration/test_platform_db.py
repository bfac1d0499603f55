"""The platform database on SQLite and on a real PostgreSQL server: migrations and the generated seed.

- ``pam db upgrade`` creates exactly the schema of the models (Alembic finds nothing to change), and
  downgrades cleanly;
- ``pam db seed`` fills it with a catalog, players and play history that look like a real platform's
  (popularity skew, trending games, every invariant of a game session), the same on both backends;
- the console script behaves: progress on stderr, a summary on stdout, a refusal to seed twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text

from clickstream.generator import generate_catalog
from pam.db.engine import create_platform_engine
from pam.db.migrate import current_revision, downgrade, head_revision, upgrade
from pam.db.models import Base, Favorite, Game, GameSession, Player
from tests.platform_db_fixture import SEED_PLAN, PostgresServer, SeededDatabase

TABLES = {"games", "players", "game_sessions", "favorites"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'platform.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database("migrations")


@pytest.fixture(params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest) -> SeededDatabase:
    return request.getfixturevalue(f"seeded_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def engine(seeded: SeededDatabase) -> Iterator[Engine]:
    engine = create_platform_engine(seeded.url)
    yield engine
    engine.dispose()


def _epoch(moment: datetime) -> float:
    """SQLite gives naive UTC datetimes, PostgreSQL aware ones."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _pam(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("pam")
    return subprocess.run(
        [str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_upgrade_creates_the_models_schema_and_downgrades(empty_url: str) -> None:
    upgrade(empty_url)
    engine = create_platform_engine(empty_url)
    try:
        assert current_revision(engine) == head_revision() == "0001"
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == [], "the migrations and the models disagree"
        indexes = {index["name"] for index in inspect(engine).get_indexes("game_sessions")}
        assert {"ix_game_sessions_player_id_started_at", "ix_game_sessions_started_at"} <= indexes
        downgrade(empty_url, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(empty_url)
        assert current_revision(engine) == "0001"
    finally:
        engine.dispose()


def test_the_seed_is_the_same_on_both_backends(seeded_sqlite: SeededDatabase, seeded_postgres: SeededDatabase) -> None:
    def content(url: str) -> tuple[object, ...]:
        engine = create_platform_engine(url)
        try:
            with engine.connect() as connection:
                return (
                    connection.execute(text("SELECT count(*), sum(rounds), sum(total_stake) FROM game_sessions")).one(),
                    connection.execute(text("SELECT session_id, game_id FROM game_sessions ORDER BY id")).all(),
                    connection.execute(text("SELECT count(*) FROM favorites")).scalar(),
                    connection.execute(text("SELECT id, jurisdictions FROM games ORDER BY id")).all()[:1],
                )
        finally:
            engine.dispose()

    sqlite, postgres = content(seeded_sqlite.url), content(seeded_postgres.url)
    assert sqlite[0][:2] == postgres[0][:2]
    assert float(sqlite[0][2]) == pytest.approx(float(postgres[0][2]))
    assert sqlite[1:3] == postgres[1:3]
    assert seeded_sqlite.summary.lines()[:6] == seeded_postgres.summary.lines()[:6]


def test_seeded_rows_are_consistent(seeded: SeededDatabase, engine: Engine) -> None:
    summary = seeded.summary
    with engine.connect() as connection:
        count = lambda model: connection.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(Game) == SEED_PLAN.games == summary.games
        assert count(Player) == SEED_PLAN.players == summary.players
        assert count(GameSession) == summary.game_sessions > 1000
        assert count(Favorite) == summary.favorites > 0
        bad = connection.scalar(
            select(func.count())
            .select_from(GameSession)
            .where((GameSession.ended_at < GameSession.started_at) | (GameSession.first_stake <= 0))
        )
        assert bad == 0
        duplicates = connection.execute(
            text("SELECT session_id, game_id FROM game_sessions GROUP BY session_id, game_id HAVING count(*) > 1")
        ).all()
        assert duplicates == []
        # Play before a game's release does not exist.
        early = connection.execute(
            select(func.count())
            .select_from(GameSession)
            .join(Game, Game.id == GameSession.game_id)
            .where(func.date(GameSession.started_at) < Game.release_date)
        ).scalar()
        assert early == 0
        anonymous = connection.scalar(
            select(func.count()).select_from(GameSession).where(GameSession.player_id.is_(None))
        )
        assert anonymous == summary.anonymous_game_sessions > 0
        first, last = connection.execute(
            select(func.min(GameSession.started_at), func.max(GameSession.started_at))
        ).one()
    span_days = (last - first).total_seconds() / 86_400
    assert span_days > SEED_PLAN.days * 0.9
    assert SEED_PLAN.start_time <= _epoch(first) < _epoch(last) < SEED_PLAN.end_time


def test_play_is_skewed_towards_popular_games_and_trending_games_rise(seeded_sqlite: SeededDatabase) -> None:
    engine = create_platform_engine(seeded_sqlite.url)
    try:
        with engine.connect() as connection:
            plays = Counter(
                dict(connection.execute(text("SELECT game_id, count(*) FROM game_sessions GROUP BY game_id")).all())
            )
            players = Counter(
                dict(
                    connection.execute(
                        text(
                            "SELECT player_id, count(*) FROM game_sessions"
                            " WHERE player_id IS NOT NULL GROUP BY player_id"
                        )
                    ).all()
                )
            )
            half = SEED_PLAN.start_time + SEED_PLAN.days * 86_400 / 2
            rows = connection.execute(select(GameSession.game_id, GameSession.started_at)).all()
    finally:
        engine.dispose()
    catalog = generate_catalog(SEED_PLAN.games, SEED_PLAN.seed, as_of=SEED_PLAN.end)
    total = sum(plays.values())
    top_decile = sum(count for _, count in plays.most_common(len(catalog) // 10))
    assert top_decile / total > 0.3, "the most popular tenth of the games gets a large share of play"
    assert not {g.game_id for g in catalog if not g.enabled} & set(plays), "disabled games are never played"
    mean_per_player = sum(players.values()) / len(players)
    assert players.most_common(1)[0][1] > 2.5 * mean_per_player, "a few regulars play a lot"
    trending = {g.game_id for g in catalog.trending}
    early = sum(1 for game, at in rows if game in trending and _epoch(at) < half)
    late = sum(1 for game, at in rows if game in trending and _epoch(at) >= half)
    assert late > early, "trending games are played more and more"


def test_pam_console_script_upgrades_seeds_and_refuses_to_seed_twice(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAM_")}
    small = ["--players", "40", "--sessions", "60", "--days", "3", "--games", "30", "--end", "2026-11-01"]

    upgraded = _pam("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "sqlite:///./.data/platform.db: schema at revision 0001" in upgraded.stdout
    assert (tmp_path / ".data" / "platform.db").is_file(), "the default database is .data/platform.db"

    seeded = _pam("db", "seed", *small, env=env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeding sqlite:///./.data/platform.db: 30 games, 40 players, 60 sessions" in seeded.stderr
    assert "games:            30" in seeded.stdout
    assert "game sessions:" in seeded.stdout
    assert "\x1b[" not in seeded.stderr, "no progress bar when stderr is not a terminal"

    again = _pam("db", "seed", *small, env=env, cwd=tmp_path)
    assert again.returncode == 1
    assert "already holds 30 games: pass --replace" in again.stderr

    replaced = _pam("db", "seed", *small, "--replace", env=env, cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines()[1:6] == seeded.stdout.splitlines()[1:6], "same plan, same rows"


def test_seed_needs_a_migrated_database(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PAM_")}}
    env["PAM_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.db'}"
    refused = _pam("db", "seed", "--players", "5", "--sessions", "5", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "run `pam db upgrade` first" in refused.stderr
    upgraded_first = _pam(
        "db", "seed", "--players", "5", "--sessions", "5", "--days", "1", "--upgrade", env=env, cwd=tmp_path
    )
    assert upgraded_first.returncode == 0, upgraded_first.stderr


def test_a_wrong_database_url_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "PAM_DATABASE_URL": "not a url"}
    wrong = _pam("db", "upgrade", env=env, cwd=tmp_path)
    assert wrong.returncode == 2
    assert "PAM_DATABASE_URL" in wrong.stderr


def test_an_unreachable_postgres_is_a_database_error(tmp_path: Path) -> None:
    from tests.platform_db_fixture import free_port

    env = {**os.environ, "PAM_DATABASE_URL": f"postgresql://nobody:secret@127.0.0.1:{free_port()}/platform"}
    failed = _pam("db", "upgrade", env=env, cwd=tmp_path)
    assert failed.returncode == 3
    assert "database error" in failed.stderr
    assert "secret" not in failed.stderr
