"""The platform schema: games, players, game sessions (play history), favorites.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRING_LIST = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_SURROGATE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MONEY = sa.Numeric(14, 2, asdecimal=False)


def _moment(name: str, *, now: bool = False) -> sa.Column[object]:
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=default)


def upgrade() -> None:
    op.create_table(
        "games",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("volatility", sa.String(10), nullable=False),
        sa.Column("rtp", sa.Numeric(5, 4, asdecimal=False), nullable=False),
        sa.Column("release_date", sa.Date(), nullable=False),
        sa.Column("jurisdictions", _STRING_LIST, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        _moment("created_at", now=True),
        _moment("updated_at", now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_games")),
        sa.CheckConstraint("volatility IN ('low', 'medium', 'high')", name=op.f("ck_games_volatility")),
        sa.CheckConstraint("rtp > 0 AND rtp <= 1", name=op.f("ck_games_rtp")),
    )
    op.create_index(op.f("ix_games_provider"), "games", ["provider"])
    op.create_index(op.f("ix_games_category"), "games", ["category"])

    op.create_table(
        "players",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _moment("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_players")),
    )
    op.create_index(op.f("ix_players_country"), "players", ["country"])

    op.create_table(
        "game_sessions",
        sa.Column("id", _SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("player_id", sa.String(64), nullable=True),
        sa.Column("game_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        _moment("started_at"),
        _moment("ended_at"),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("total_stake", _MONEY, nullable=False),
        sa.Column("total_win", _MONEY, nullable=False),
        sa.Column("first_stake", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("platform", sa.String(16), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("lobby_section", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_game_sessions")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_game_sessions_player_id_players"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["game_id"], ["games.id"], name=op.f("fk_game_sessions_game_id_games")),
        sa.UniqueConstraint("session_id", "game_id", name=op.f("uq_game_sessions_session_id_game_id")),
        sa.CheckConstraint("ended_at >= started_at", name=op.f("ck_game_sessions_ends_after_start")),
        sa.CheckConstraint("rounds >= 0", name=op.f("ck_game_sessions_rounds")),
    )
    op.create_index(op.f("ix_game_sessions_player_id_started_at"), "game_sessions", ["player_id", "started_at"])
    op.create_index(op.f("ix_game_sessions_game_id_started_at"), "game_sessions", ["game_id", "started_at"])
    op.create_index(op.f("ix_game_sessions_started_at"), "game_sessions", ["started_at"])

    op.create_table(
        "favorites",
        sa.Column("player_id", sa.String(64), nullable=False),
        sa.Column("game_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        _moment("added_at"),
        sa.PrimaryKeyConstraint("player_id", "game_id", name=op.f("pk_favorites")),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_favorites_player_id_players"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["game_id"], ["games.id"], name=op.f("fk_favorites_game_id_games"), ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_favorites_game_id"), "favorites", ["game_id"])


def downgrade() -> None:
    op.drop_table("favorites")
    op.drop_table("game_sessions")
    op.drop_table("players")
    op.drop_table("games")
