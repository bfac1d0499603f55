"""The platform database: a player's country (their jurisdiction) and the games they played last.

Queries run on a small thread pool (SQLAlchemy is blocking); the caller's deadline does not wait for a
query that overruns it, and the pool bounds how many run at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine, select

from pam.db.models import GameSession, Player

#: How many of the latest game sessions are read to find the last played game still in the catalog.
RECENT_SESSIONS: Final = 10


@dataclass(frozen=True, slots=True)
class PlayerProfile:
    """What the lobby needs of a player; ``known`` False when the database has no such player."""

    player_id: str
    known: bool
    country: str | None = None
    #: Games played last, newest first, without repeats.
    recent_game_ids: tuple[str, ...] = ()


class PlayerDirectory:
    """Looks players up in the platform database."""

    def __init__(self, engine: Engine, *, threads: int = 8) -> None:
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pam-db")
        #: One query: the player's country beside their latest game sessions (None when there are none).
        self._query = (
            select(Player.country, GameSession.game_id)
            .outerjoin(GameSession, GameSession.player_id == Player.id)
            .order_by(GameSession.started_at.desc())
            .limit(RECENT_SESSIONS)
        )

    def lookup_blocking(self, player_id: str) -> PlayerProfile:
        with self._engine.connect() as connection:
            rows = connection.execute(self._query.where(Player.id == player_id)).all()
        if not rows:
            return PlayerProfile(player_id, known=False)
        games = (game_id for _, game_id in rows if game_id is not None)
        return PlayerProfile(player_id, known=True, country=rows[0][0], recent_game_ids=tuple(dict.fromkeys(games)))

    async def lookup(self, player_id: str) -> PlayerProfile:
        """The player's profile (a query on the pool)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.lookup_blocking, player_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
