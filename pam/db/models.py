"""The platform database: games (items), players (users) and play history (interactions).

One row of ``game_sessions`` is one game played within one player session: every round of that game
in that session, however often the player left and came back. It is what the recommendation models
learn from (a ``play`` interaction, see ``clickstream/default_mapping.yaml``) and what the lobby reads
for "because you played". Times are UTC; money is in the player's currency.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint and index names that migrations can rely on, on every backend.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A list of strings: JSONB on PostgreSQL, JSON text elsewhere.
StringList = JSON().with_variant(JSONB(), "postgresql")
#: A surrogate key: BIGINT identity on PostgreSQL, SQLite's INTEGER rowid alias.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")
#: An amount of money (floats in Python, exact decimals in the database).
Money = Numeric(14, 2, asdecimal=False)

ID_LENGTH: Final = 64
VOLATILITIES: Final = ("low", "medium", "high")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Game(Base):
    """A game of the catalog."""

    __tablename__ = "games"
    __table_args__ = (
        CheckConstraint("volatility IN ('low', 'medium', 'high')", name="volatility"),
        CheckConstraint("rtp > 0 AND rtp <= 1", name="rtp"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100), index=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    volatility: Mapped[str] = mapped_column(String(10))
    #: Return to player, as a fraction (0.9612 is 96.12 %).
    rtp: Mapped[float] = mapped_column(Numeric(5, 4, asdecimal=False))
    release_date: Mapped[date]
    #: Countries (ISO 3166-1 alpha-2) where the game is licensed.
    jurisdictions: Mapped[list[str]] = mapped_column(StringList)
    #: A disabled game is never shown in the lobby (withdrawn, or not yet launched).
    enabled: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Player(Base):
    """A registered player."""

    __tablename__ = "players"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    #: Country of residence (ISO 3166-1 alpha-2): decides which games may be shown.
    country: Mapped[str] = mapped_column(String(2), index=True)
    #: The platform the player registered on (ios, android, web, desktop).
    platform: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    #: When the player registered.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GameSession(Base):
    """One game played in one player session (play history)."""

    __tablename__ = "game_sessions"
    __table_args__ = (
        UniqueConstraint("session_id", "game_id"),
        CheckConstraint("ended_at >= started_at", name="ends_after_start"),
        CheckConstraint("rounds >= 0", name="rounds"),
        Index(None, "player_id", "started_at"),
        Index(None, "game_id", "started_at"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    #: None for play without an account (demo play): kept for popularity, not a user interaction.
    player_id: Mapped[str | None] = mapped_column(ForeignKey("players.id", ondelete="CASCADE"))
    game_id: Mapped[str] = mapped_column(ForeignKey("games.id"))
    #: The app session (login to logout) the game was played in.
    session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    #: The first bet or round.
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The last event of the game in the session (its exit, else its last round).
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rounds: Mapped[int]
    total_stake: Mapped[float] = mapped_column(Money)
    total_win: Mapped[float] = mapped_column(Money)
    #: The stake of the first bet or round: the ``play`` interaction's event value.
    first_stake: Mapped[float] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    platform: Mapped[str | None] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2))
    #: The lobby row the game was launched from (popular, for-you, search, ...).
    lobby_section: Mapped[str | None] = mapped_column(String(40))


class Favorite(Base):
    """A game a player has marked as a favourite (current state: a removed favourite is deleted)."""

    __tablename__ = "favorites"
    __table_args__ = (Index(None, "game_id"),)

    player_id: Mapped[str] = mapped_column(ForeignKey("players.id", ondelete="CASCADE"), primary_key=True)
    game_id: Mapped[str] = mapped_column(ForeignKey("games.id", ondelete="CASCADE"), primary_key=True)
    #: The app session it was added in.
    session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
