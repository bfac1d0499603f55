"""Partition keys of captured events: the player (else the session) exactly as the event model reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickstream.capture import MAX_PARTITION_KEY_LENGTH, event_partition_key, read_capture
from clickstream.raw import RawEvent


def test_numeric_ids_key_a_players_events_alike(tmp_path: Path) -> None:
    """``4711`` and ``"4711"`` are one player to the model, so one key (one shard) to produce."""
    events: list[dict[str, Any]] = [
        {"event_type": "round", "player_id": 4711, "session_id": 99, "timestamp": 1_700_000_000},
        {"event_type": "round", "player_id": 4711, "session_id": 99, "timestamp": 1_700_000_001},
        {"event_type": "round", "player_id": "4711", "session_id": "99", "timestamp": 1_700_000_002},
        {"event_type": "round", "playerId": " 4711 ", "timestamp": 1_700_000_003},
        {"event_type": "round", "session_id": 99, "timestamp": 1_700_000_004},
        {"event_type": "round", "player_id": 4711.0, "timestamp": 1_700_000_005},
    ]
    path = tmp_path / "capture.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))

    keys = [record.partition_key for record in read_capture(path)]

    assert keys == ["4711", "4711", "4711", "4711", "99", "4711.0"]
    assert keys == [RawEvent.model_validate(e).player_id or RawEvent.model_validate(e).session_id for e in events]


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"player_id": True, "session_id": "s-1"}, "s-1"),  # a boolean is not a number here
        ({"player_id": "  ", "session_id": " s-1\t"}, "s-1"),
        ({"player_id": None, "playerId": "p-1", "session_id": "s-1"}, "s-1"),  # snake_case wins, even when null
        ({"player_id": "p" * (MAX_PARTITION_KEY_LENGTH + 1), "session_id": "s-1"}, "s-1"),
        ({"player_id": "\x1cp-1\x1c"}, "\x1cp-1\x1c"),  # not Unicode whitespace: the model keeps it
        ({"player_id": -3}, "-3"),
        ({"player_id": 1e20}, "1e+20"),
        ({"player_id": [1]}, None),
        ({}, None),
    ],
)
def test_key_edge_cases(event: dict[str, Any], key: str | None) -> None:
    assert event_partition_key(event) == key


def test_an_int_too_long_to_print_is_no_key() -> None:
    assert event_partition_key({"player_id": 10**5000, "session_id": "s-1"}) == "s-1"


_WHITESPACE = st.sampled_from([" ", "\t", "\n", "\xa0", "\u3000", "\x1c", "\u200b"])
_IDS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.builds(lambda pad, core: pad + core + pad, st.text(_WHITESPACE, max_size=2), st.text(max_size=4)),
    st.text(min_size=MAX_PARTITION_KEY_LENGTH - 1, max_size=MAX_PARTITION_KEY_LENGTH + 2),
)


@given(
    st.dictionaries(st.sampled_from(["player_id", "playerId", "session_id", "sessionId"]), _IDS),
)
def test_the_key_is_the_models_player_else_its_session(ids: dict[str, Any]) -> None:
    event = {"event_type": "round", **ids}
    try:
        model = RawEvent.model_validate(event)
    except pydantic.ValidationError:
        return  # the event is dead-lettered whatever its key
    fitting = [i for i in (model.player_id, model.session_id) if i is not None and len(i) <= MAX_PARTITION_KEY_LENGTH]
    assert event_partition_key(event) == (fitting[0] if fitting else None)
