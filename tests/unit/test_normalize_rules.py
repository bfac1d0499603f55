"""The normalization rules, one at a time (the fixtures cover them together)."""

from __future__ import annotations

from typing import Any

import pytest

from clickstream.mapping import EventMapping, MappingError
from clickstream.normalize import Normalizer, Source, collapsed_event_id, normalize, stable_id
from clickstream.outcomes import Drop, DropReason, PersonalizeEvent

MAPPING = EventMapping.default()
SOURCE = Source("shard-1", "49590338271490256608559692538361571095921575989136588898", 0, 2, 1_790_000_000.0)


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_type": "game_launch",
        "player_id": "p-1",
        "session_id": "s-1",
        "game_id": "g-1",
        "timestamp": 1_789_999_000,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_camel_case_keys_and_epoch_millis() -> None:
    out = normalize(
        {
            "eventType": "game_tile_click",
            "playerId": "p",
            "sessionId": "s",
            "gameId": 7,
            "timestamp": 1_789_999_000_000,
            "lobbySection": "for-you",
            "position": 3,
        },
        SOURCE,
        MAPPING,
    )
    assert isinstance(out, PersonalizeEvent)
    assert out.item_id == "7" and out.sent_at == 1_789_999_000.0
    assert out.properties == '{"lobbySection":"for-you","position":3}'


def test_iso_timestamp_without_zone_is_utc() -> None:
    out = normalize(event(timestamp="2026-09-21T12:00:00"), SOURCE, MAPPING)
    assert isinstance(out, PersonalizeEvent) and out.sent_at == 1_789_992_000.0


def test_missing_timestamp_falls_back_to_arrival() -> None:
    out = normalize(event(timestamp=None), SOURCE, MAPPING)
    assert isinstance(out, PersonalizeEvent) and out.sent_at == SOURCE.arrival_time


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event_type": None}, DropReason.MISSING_EVENT_TYPE),
        ({"event_type": "heartbeat"}, DropReason.NOT_AN_INTERACTION),
        ({"event_type": "teleport"}, DropReason.UNKNOWN_EVENT_TYPE),
        ({"session_id": None}, DropReason.MISSING_SESSION),
        ({"game_id": ""}, DropReason.MISSING_ITEM),
        ({"timestamp": "yesterday"}, DropReason.BAD_TIMESTAMP),
        ({"timestamp": True}, DropReason.BAD_TIMESTAMP),
        ({"timestamp": 86_400}, DropReason.BAD_TIMESTAMP),
        ({"timestamp": "2099-01-01T00:00:00Z"}, DropReason.BAD_TIMESTAMP),
        ({"position": "x"}, DropReason.INVALID_FIELD),
        ({"game_id": "g" * 257}, DropReason.TOO_LARGE),
        ({"recommendation_id": "r" * 41}, DropReason.TOO_LARGE),
        ({"platform": "x" * 1100}, DropReason.TOO_LARGE),
    ],
)
def test_drop_reasons(fields: dict[str, Any], reason: DropReason) -> None:
    out = normalize(event(**fields), SOURCE, MAPPING)
    assert isinstance(out, Drop) and out.reason is reason


def test_far_future_is_bad_even_without_an_arrival_time() -> None:
    out = normalize(event(timestamp="2999-01-01T00:00:00Z"), Source("f", "1"), MAPPING)
    assert isinstance(out, Drop) and out.reason is DropReason.BAD_TIMESTAMP


def test_empty_recommendation_id_is_absent() -> None:
    out = normalize(event(recommendation_id=""), SOURCE, MAPPING)
    assert isinstance(out, PersonalizeEvent) and out.recommendation_id is None


def test_impression_truncated_to_25() -> None:
    out = normalize(event(impression=[f"g-{i}" for i in range(30)]), SOURCE, MAPPING)
    assert isinstance(out, PersonalizeEvent) and out.impression is not None and len(out.impression) == 25


def test_event_ids_are_deterministic() -> None:
    with_client_id = normalize(event(event_id="client-1"), SOURCE, MAPPING)
    assert isinstance(with_client_id, PersonalizeEvent) and with_client_id.event_id == "client-1"
    derived = normalize(event(), SOURCE, MAPPING)
    assert isinstance(derived, PersonalizeEvent)
    assert derived.event_id == stable_id("shard-1", SOURCE.sequence_number, "0", "2")
    other_position = normalize(event(), Source("shard-1", SOURCE.sequence_number, 0, 3, SOURCE.arrival_time), MAPPING)
    assert isinstance(other_position, PersonalizeEvent) and other_position.event_id != derived.event_id


def test_rounds_and_bets_collapse_into_one_play_per_game_and_session() -> None:
    normalizer = Normalizer(MAPPING)
    first = normalizer.normalize(event(event_type="game_round", stake=2.5, event_id="r1"), SOURCE)
    assert isinstance(first, PersonalizeEvent)
    assert first.event_type == "play" and first.event_value == 2.5
    assert first.event_id == collapsed_event_id("s-1", "g-1", "play"), "a re-send after restart is the same event"
    bet = normalizer.normalize(event(event_type="bet_placed", stake=9, event_id="b1"), SOURCE)
    assert isinstance(bet, Drop) and bet.reason is DropReason.COLLAPSED
    other_game = normalizer.normalize(event(event_type="game_round", game_id="g-2"), SOURCE)
    assert isinstance(other_game, PersonalizeEvent)
    launch = normalizer.normalize(event(event_id="l1"), SOURCE)
    again = normalizer.normalize(event(event_id="l1"), SOURCE)
    assert isinstance(launch, PersonalizeEvent)
    assert isinstance(again, Drop) and again.reason is DropReason.DUPLICATE


def test_collapse_memory_is_bounded() -> None:
    normalizer = Normalizer(MAPPING, memory=100)
    for i in range(1000):
        normalizer.normalize(event(event_type="game_round", session_id=f"s-{i}"), SOURCE)
    assert normalizer.remembered == 100


def test_bad_mapping_file_names_the_file(tmp_path: Any) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("version: 1\ninteractions:\n  x: {event_type: play, properties: [user_id]}\n")
    with pytest.raises(MappingError, match=str(path)):
        EventMapping.load(path)
    path.write_text("version: 1\ninteractions:\n  a: {event_type: play, collapse: true}\n  b: {event_type: play}\n")
    with pytest.raises(MappingError, match="collapse"):
        EventMapping.load(path)


def test_the_default_mapping_ends_sessions_on_logout() -> None:
    assert "logout" in MAPPING.session_end
