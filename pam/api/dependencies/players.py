"""The platform database: a player's country (their jurisdiction) and the games they played last.

Queries run on a small thread pool (the drivers are blocking); the caller's deadline does not wait for a
query that overruns it, and the pool bounds how many run at once. The one query is compiled once for the
engine's dialect and run on the pool's DBAPI connection directly: a SQLAlchemy ``execute`` costs about
ten times the query itself on SQLite, and this is the lobby's hot path.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, bindparam, select

from pam.api.catalog import country_code
from pam.db.models import GameSession, Player

#: How many of the latest game sessions are read to find the last played game still in the catalog.
RECENT_SESSIONS: Final = 10


@dataclass(frozen=True, slots=True)
class PlayerProfile:
    """What the lobby needs of a player; ``known`` False when the database has no such player.

    The country is normalized here, once, whoever builds the profile (the database lookup, a test's fake):
    trimmed and upper-case as the catalog's jurisdictions are written, a blank one None (unknown).
    """

    player_id: str
    known: bool
    #: ISO country code as the catalog's jurisdictions write it (``SE``); None when unknown or blank.
    country: str | None = None
    #: Games played last, newest first, without repeats.
    recent_game_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        country = country_code(self.country)
        if country != self.country:
            object.__setattr__(self, "country", country)  # frozen: set once, while it is being built


class PlayerDirectory:
    """Looks players up in the platform database."""

    def __init__(self, engine: Engine, *, threads: int = 8) -> None:
        self._engine = engine
        #: None: queries run on the event loop (``threads=0``; for an embedded SQLite file, where a query
        #: takes microseconds and handing it to a thread costs more than running it).
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pam-db") if threads > 0 else None
        #: One query: the player's country beside their latest game sessions (None when there are none).
        query = (
            select(Player.country, GameSession.game_id)
            .outerjoin(GameSession, GameSession.player_id == Player.id)
            .where(Player.id == bindparam("player_id"))
            .order_by(GameSession.started_at.desc())
            .limit(RECENT_SESSIONS)
        )
        compiled = query.compile(dialect=engine.dialect)
        self._sql = compiled.string
        self._params = compiled.construct_params({"player_id": ""})
        #: Parameter names in order for positional paramstyles (SQLite's ``?``), None for named ones.
        self._positions = tuple(compiled.positiontup) if compiled.positiontup else None

    def _arguments(self, player_id: str) -> Any:
        params = {**self._params, "player_id": player_id}
        if self._positions is None:
            return params
        return tuple(params[name] for name in self._positions)

    def lookup_blocking(self, player_id: str) -> PlayerProfile:
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, self._arguments(player_id))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        except Exception:
            # The connection may be broken (a database restart): the pool opens a new one next time.
            connection.invalidate()
            raise
        finally:
            connection.close()
        if not rows:
            return PlayerProfile(player_id, known=False)
        games = (game_id for _, game_id in rows if game_id is not None)
        return PlayerProfile(player_id, known=True, country=rows[0][0], recent_game_ids=tuple(dict.fromkeys(games)))

    async def lookup(self, player_id: str) -> PlayerProfile:
        """The player's profile (a query on the pool, or right here without one)."""
        if self._pool is None:
            return self.lookup_blocking(player_id)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.lookup_blocking, player_id)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
