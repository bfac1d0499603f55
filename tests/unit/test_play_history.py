"""pam.db.play_history: a clickstream folded into the rows the platform keeps (game sessions, favourites)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pam.db.play_history import GameSessionRecord, PlayHistoryRecorder

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC).timestamp()
RELEASES = {"g-1": date(2020, 1, 1), "g-2": date(2020, 1, 1), "g-new": date(2026, 11, 2)}


def _event(event_type: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"event_type": event_type, "session_id": "s-1", "player_id": "p-1", "timestamp": T0 + at, **fields}


def _fold(events: list[dict[str, Any]], **options: Any) -> tuple[PlayHistoryRecorder, list[GameSessionRecord]]:
    recorder = PlayHistoryRecorder(RELEASES, **options)
    records = [record for event in events for record in recorder.add(event)]
    return recorder, records + recorder.finish()


def test_rounds_and_bets_of_one_game_are_one_game_session() -> None:
    events = [
        _event("login", 0, platform="ios", country="GB"),
        _event("game_tile_click", 5, game_id="g-1", lobby_section="popular", position=2),
        _event("game_launch", 6, game_id="g-1", lobby_section="popular"),
        _event("bet_placed", 10, game_id="g-1", stake=0.5, currency="GBP"),
        _event("game_round", 12, game_id="g-1", stake=0.5, win=0.0, currency="GBP"),
        _event("bet_placed", 20, game_id="g-1", stake=1.0, currency="GBP"),
        _event("game_round", 22, game_id="g-1", stake=1.0, win=2.5, currency="GBP"),
        _event("game_exit", 30, game_id="g-1", duration_ms=24_000),
        _event("heartbeat", 60),
    ]
    _, (record,) = _fold(events)
    assert record.row() == {
        "player_id": "p-1",
        "game_id": "g-1",
        "session_id": "s-1",
        "started_at": datetime.fromtimestamp(T0 + 10, UTC),
        "ended_at": datetime.fromtimestamp(T0 + 30, UTC),
        "rounds": 2,
        "total_stake": 1.5,
        "total_win": 2.5,
        "first_stake": 0.5,
        "currency": "GBP",
        "platform": "ios",
        "country": "GB",
        "lobby_section": "popular",
    }


def test_camel_case_keys_and_millisecond_timestamps() -> None:
    events = [
        {"eventType": "game_round", "sessionId": "s-9", "gameId": "g-2", "stake": 2, "timestamp": (T0 + 1) * 1000},
    ]
    _, (record,) = _fold(events)
    assert (record.session_id, record.game_id, record.player_id, record.first_stake) == ("s-9", "g-2", None, 2.0)
    assert record.started_at == datetime.fromtimestamp(T0 + 1, UTC)


def test_a_client_retry_counts_once() -> None:
    round_ = _event("game_round", 1, game_id="g-1", stake=1.0, win=0.0, event_id="e-1")
    recorder, (record,) = _fold([round_, dict(round_)])
    assert record.rounds == 1
    assert recorder.skipped == {"client_retry": 1}


def test_a_game_played_twice_in_a_session_is_one_game_session() -> None:
    events = [
        _event("game_round", 1, game_id="g-1", stake=1.0, win=0.0),
        _event("game_round", 10, game_id="g-2", stake=1.0, win=0.0),
        _event("game_round", 20, game_id="g-1", stake=2.0, win=0.0),
    ]
    _, records = _fold(events)
    assert [(r.game_id, r.rounds, r.first_stake) for r in records] == [("g-1", 2, 1.0), ("g-2", 1, 1.0)]


def test_idle_sessions_complete_as_time_moves_on() -> None:
    recorder = PlayHistoryRecorder(RELEASES, idle_timeout=600)
    assert recorder.add(_event("game_round", 0, game_id="g-1", stake=1.0)) == []
    later = {**_event("game_round", 601, game_id="g-2", stake=1.0), "session_id": "s-2"}
    (completed,) = recorder.add(later)
    assert completed.session_id == "s-1"
    assert recorder.open_sessions == 1


def test_unknown_unreleased_and_late_games_are_left_out() -> None:
    events = [
        _event("game_round", 1, game_id="g-unknown", stake=1.0),
        _event("game_round", 2, game_id="g-new", stake=1.0),
        _event("game_round", 3, game_id="g-1", stake=1.0),
        _event("game_round", 4000, game_id="g-2", stake=1.0),
        {"event_type": "game_round", "game_id": "g-1", "stake": 1.0},
    ]
    recorder, records = _fold(events, until=T0 + 3600)
    assert [r.game_id for r in records] == ["g-1"]
    assert recorder.skipped == {"unknown_game": 1, "before_release": 1, "after_end": 1, "unusable": 1}


def test_favourites_are_the_current_state_of_registered_players() -> None:
    events = [
        _event("favorite_added", 1, game_id="g-1"),
        _event("favorite_added", 2, game_id="g-2"),
        _event("favorite_removed", 3, game_id="g-1"),
        {**_event("favorite_added", 4, game_id="g-1"), "player_id": None, "session_id": "s-anon"},
    ]
    recorder, _ = _fold(events)
    assert [(f.player_id, f.game_id) for f in recorder.favorites()] == [("p-1", "g-2")]
