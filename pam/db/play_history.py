"""Play history from a clickstream: the rows the platform keeps, folded from the events the app sends.

The platform's game server does not store rounds for the lobby; it keeps one row per game per app
session (rounds, stakes, wins) and the players' favourites. :class:`PlayHistoryRecorder` derives
exactly those rows from a time-ordered clickstream (version 1 events, snake_case or camelCase keys,
any timestamp format), so a database seeded from generated events holds the history the same
events would have left on a real platform.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from pydantic.alias_generators import to_camel

from clickstream.raw import parse_timestamp

#: Raw event types that are a bet or a round of the game being played.
PLAY_EVENTS: Final = frozenset({"bet_placed", "game_round"})
#: Raw event types that launch a game from a lobby row.
LAUNCH_EVENTS: Final = frozenset({"game_tile_click", "game_launch"})
#: An app session with no event for this long is over (its heartbeats tick every minute).
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 1800.0


def _field(event: Mapping[str, Any], name: str) -> Any:
    value = event.get(name)
    return event.get(to_camel(name)) if value is None else value


def _text(event: Mapping[str, Any], name: str) -> str | None:
    value = _field(event, name)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _amount(event: Mapping[str, Any], name: str) -> float | None:
    value = _field(event, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class GameSessionRecord:
    """One ``game_sessions`` row."""

    player_id: str | None
    game_id: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    rounds: int
    total_stake: float
    total_win: float
    first_stake: float
    currency: str
    platform: str | None
    country: str | None
    lobby_section: str | None

    def row(self) -> dict[str, Any]:
        """The row as column -> value, for an executemany insert."""
        return {
            "player_id": self.player_id,
            "game_id": self.game_id,
            "session_id": self.session_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "rounds": self.rounds,
            "total_stake": round(self.total_stake, 2),
            "total_win": round(self.total_win, 2),
            "first_stake": round(self.first_stake, 2),
            "currency": self.currency,
            "platform": self.platform,
            "country": self.country,
            "lobby_section": self.lobby_section,
        }


@dataclass(frozen=True, slots=True)
class FavoriteRecord:
    """One ``favorites`` row."""

    player_id: str
    game_id: str
    session_id: str
    added_at: datetime

    def row(self) -> dict[str, Any]:
        return {
            "player_id": self.player_id,
            "game_id": self.game_id,
            "session_id": self.session_id,
            "added_at": self.added_at,
        }


@dataclass(slots=True)
class _OpenGame:
    started_at: float
    ended_at: float
    first_stake: float
    currency: str
    rounds: int = 0
    total_stake: float = 0.0
    total_win: float = 0.0
    lobby_section: str | None = None


@dataclass(slots=True)
class _OpenSession:
    session_id: str
    last_seen: float
    player_id: str | None = None
    platform: str | None = None
    country: str | None = None
    event_ids: set[str] = field(default_factory=set)
    #: Game id -> the lobby row it was last launched from.
    launched_from: dict[str, str] = field(default_factory=dict)
    games: dict[str, _OpenGame] = field(default_factory=dict)


class PlayHistoryRecorder:
    """Folds a time-ordered clickstream into game sessions and favourites.

    Feed every event to :meth:`add`, which returns the game sessions that are complete; then call
    :meth:`finish` for the rest. An app session is complete when it has had no event for
    ``idle_timeout`` seconds (or at :meth:`finish`). Memory holds the open app sessions and the current
    favourites, never the whole history.

    ``release_dates`` (game id -> release date) is the catalog: events of games not in it, or dated
    before the game's release, are left out and counted in :attr:`skipped`, as are events at or after
    ``until`` (epoch seconds: the end of the recorded history). A client retry (an
    event id seen before in the session) is counted once. Play without an account is kept with
    ``player_id`` None; favourites need an account.
    """

    def __init__(
        self,
        release_dates: Mapping[str, date],
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        until: float | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self._release_dates = release_dates
        self._idle_timeout = idle_timeout
        self._until = until
        self._open: OrderedDict[str, _OpenSession] = OrderedDict()
        self._favorites: dict[tuple[str, str], FavoriteRecord] = {}
        #: Events left out, by reason.
        self.skipped: Counter[str] = Counter()
        self.events = 0

    # --- input -------------------------------------------------------------------------------------

    def add(self, event: Mapping[str, Any]) -> list[GameSessionRecord]:
        """Record one event; the game sessions completed by the time it happened."""
        self.events += 1
        event_type = _text(event, "event_type")
        session_id = _text(event, "session_id")
        try:
            seconds = parse_timestamp(_field(event, "timestamp"))
        except (ValueError, OverflowError, TypeError):
            seconds = None
        if event_type is None or session_id is None or seconds is None:
            self.skipped["unusable"] += 1
            return []
        if self._until is not None and seconds >= self._until:
            self.skipped["after_end"] += 1
            return []
        completed = self._expire(seconds)
        session = self._open.get(session_id)
        if session is None:
            session = self._open[session_id] = _OpenSession(session_id, seconds)
        else:
            self._open.move_to_end(session_id)
            session.last_seen = max(session.last_seen, seconds)
        event_id = _text(event, "event_id")
        if event_id is not None:
            if event_id in session.event_ids:
                self.skipped["client_retry"] += 1
                return completed
            session.event_ids.add(event_id)
        self._apply(session, event_type, event, seconds)
        return completed

    def finish(self) -> list[GameSessionRecord]:
        """Close every open app session; its game sessions."""
        completed: list[GameSessionRecord] = []
        while self._open:
            _, session = self._open.popitem(last=False)
            completed.extend(self._close(session))
        return completed

    def favorites(self) -> Iterator[FavoriteRecord]:
        """The favourites at the end of what was recorded, oldest first."""
        return iter(sorted(self._favorites.values(), key=lambda f: (f.added_at, f.player_id, f.game_id)))

    @property
    def open_sessions(self) -> int:
        return len(self._open)

    # --- folding -----------------------------------------------------------------------------------

    def _playable(self, game_id: str | None, seconds: float) -> bool:
        if game_id is None:
            self.skipped["no_game"] += 1
            return False
        released = self._release_dates.get(game_id)
        if released is None:
            self.skipped["unknown_game"] += 1
            return False
        if _moment(seconds).date() < released:
            self.skipped["before_release"] += 1
            return False
        return True

    def _apply(self, session: _OpenSession, event_type: str, event: Mapping[str, Any], seconds: float) -> None:
        player_id = _text(event, "player_id")
        if player_id is not None:
            session.player_id = player_id
        session.platform = _text(event, "platform") or session.platform
        session.country = _text(event, "country") or session.country
        game_id = _text(event, "game_id")
        if event_type in LAUNCH_EVENTS:
            section = _text(event, "lobby_section")
            if game_id is not None and section is not None:
                session.launched_from[game_id] = section
        elif event_type in PLAY_EVENTS:
            self._play(session, event_type, event, game_id, seconds)
        elif event_type == "game_exit":
            game = session.games.get(game_id or "")
            if game is not None:
                game.ended_at = max(game.ended_at, seconds)
        elif event_type in ("favorite_added", "favorite_removed"):
            if session.player_id is None or not self._playable(game_id, seconds):
                return
            assert game_id is not None
            key = (session.player_id, game_id)
            if event_type == "favorite_added":
                self._favorites.setdefault(
                    key, FavoriteRecord(session.player_id, game_id, session.session_id, _moment(seconds))
                )
            else:
                self._favorites.pop(key, None)

    def _play(
        self, session: _OpenSession, event_type: str, event: Mapping[str, Any], game_id: str | None, seconds: float
    ) -> None:
        stake = _amount(event, "stake")
        if stake is None:
            self.skipped["no_stake"] += 1
            return
        if not self._playable(game_id, seconds):
            return
        assert game_id is not None
        game = session.games.get(game_id)
        if game is None:
            game = session.games[game_id] = _OpenGame(
                started_at=seconds,
                ended_at=seconds,
                first_stake=stake,
                currency=_text(event, "currency") or "EUR",
                lobby_section=session.launched_from.get(game_id),
            )
        game.ended_at = max(game.ended_at, seconds)
        # A bet is settled by its round: the round carries the stake and the win.
        if event_type == "game_round":
            game.rounds += 1
            game.total_stake += stake
            game.total_win += _amount(event, "win") or 0.0

    def _expire(self, now: float) -> list[GameSessionRecord]:
        completed: list[GameSessionRecord] = []
        horizon = now - self._idle_timeout
        while self._open:
            session = next(iter(self._open.values()))
            if session.last_seen >= horizon:
                break
            self._open.popitem(last=False)
            completed.extend(self._close(session))
        return completed

    def _close(self, session: _OpenSession) -> list[GameSessionRecord]:
        return [
            GameSessionRecord(
                player_id=session.player_id,
                game_id=game_id,
                session_id=session.session_id,
                started_at=_moment(game.started_at),
                ended_at=_moment(game.ended_at),
                rounds=game.rounds,
                total_stake=game.total_stake,
                total_win=game.total_win,
                first_stake=game.first_stake,
                currency=game.currency,
                platform=session.platform,
                country=session.country,
                lobby_section=game.lobby_section,
            )
            for game_id, game in session.games.items()
        ]
