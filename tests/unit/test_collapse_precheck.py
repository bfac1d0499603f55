"""The collapse pre-check on the raw dict changes nothing but speed.

``Normalizer`` recognises a repeated, provably valid round or bet before validating it. The
properties here run the same sequences of events, valid and broken in every way we could think of,
through a normalizer with the pre-check and one without it (the full path alone), and require the
same outcome for every event (reason and detail of a drop, or the event itself) and the same
memory afterwards (which ids are remembered, in least-recently-seen order).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream.generator import DEFAULT_CONFIG, generate_catalog, generate_events
from clickstream.mapping import EventMapping, Interaction
from clickstream.normalize import Normalizer, Source, collapsed_event_id
from clickstream.outcomes import Drop, DropReason, PersonalizeEvent

MAPPING = EventMapping.default()
ARRIVAL = 1_736_164_900.0
#: A mapping whose collapsible type carries every kind of property and an int eventValue.
WIDE_MAPPING = EventMapping(
    interactions={
        "game_round": Interaction(
            event_type="play",
            collapse=True,
            value="duration_ms",
            properties=("platform", "country", "currency", "stake", "win", "duration_ms", "position", "lobby_section"),
        ),
        "spin": Interaction(event_type="play", collapse=True, value="win", properties=("lobby_section",)),
        "game_launch": Interaction(event_type="launch"),
    },
    non_interactions=frozenset({"heartbeat"}),
)


class _NoPrecheck:
    """Stands in for the pre-check: never answers, so every event takes the full path."""

    def collapse_id(self, data: Mapping[str, Any], source: Source) -> str | None:
        return None


def _pair(mapping: EventMapping, memory: int) -> tuple[Normalizer, Normalizer]:
    fast = Normalizer(mapping, memory=memory)
    slow = Normalizer(mapping, memory=memory)
    slow._precheck = _NoPrecheck()  # type: ignore[assignment]
    return fast, slow


def _same(a: PersonalizeEvent | Drop, b: PersonalizeEvent | Drop) -> bool:
    if isinstance(a, PersonalizeEvent) and isinstance(b, PersonalizeEvent):
        # NaN never equals itself; a delivered event can carry none, but compare safely anyway.
        return json.dumps(a.to_api(), sort_keys=True) == json.dumps(b.to_api(), sort_keys=True) and a == b
    return a == b


def _run_both(mapping: EventMapping, memory: int, events: list[tuple[Any, float | None]]) -> int:
    """Both normalizers over ``events``; asserts equal outcomes and memory; returns pre-check hits."""
    fast, slow = _pair(mapping, memory)
    hits = 0
    for position, (data, arrival) in enumerate(events):
        source = Source("shard-1", "4959", 0, position, arrival)
        before = fast._precheck.collapse_id(data, source)
        expected = slow.normalize(data, source)
        got = fast.normalize(data, source)
        assert _same(got, expected), (data, arrival, got, expected)
        if before is not None and isinstance(expected, Drop) and expected.reason is DropReason.COLLAPSED:
            hits += 1
        # A pre-check answer is always the id the full path gives this event.
        if before is not None:
            assert isinstance(expected, Drop | PersonalizeEvent)
            assert (expected.detail if isinstance(expected, Drop) else expected.event_id) == before, (data, expected)
    assert list(fast._seen._keys) == list(slow._seen._keys)
    return hits


# -- values, good and broken -------------------------------------------------------------------

_TRICKY_TEXT = [
    "",
    " ",
    "\t",
    "\x1c",
    "\u00a0",
    "\u2003",
    "\x85",
    "é",
    "a\ud800",
    "\udfff",
    "x" * 40,
    "x" * 41,
    "x" * 256,
    "x" * 257,
    "x" * 1100,
    '"\\\x01' * 200,
    "\x01" * 170,
    "\uff12\uff10",  # fullwidth digits: float() reads them
]
_text = st.one_of(
    st.sampled_from(_TRICKY_TEXT),
    st.text(alphabet=st.sampled_from('ab1 -_\t\x1c\u00a0é\ud800"\\:Z.T+'), max_size=12),
    st.builds(lambda s: s * 50, st.text(alphabet='ab\x01"é', min_size=1, max_size=5)),
)
_WEIRD: list[Any] = [True, False, 0, 1, -1, 7, 1.5, math.nan, math.inf, -math.inf, 2**53, 2**53 - 1, -(2**53)]
_WEIRD += [10**30, 1e308, [], {}, ["a"], {"a": 1}]
_weird = st.sampled_from(_WEIRD)
_session = st.one_of(st.sampled_from(["s-1", "s-2", " s-1", "s-1 ", "s-1\x1c", "\u00a0s-2"]), _text, _weird)
_game = st.one_of(st.sampled_from(["g-1", "g-2", "g-1 ", 7, "7"]), _text, _weird)
_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0.1, 2, 2**53, 2**53 - 1, 10**400 // 10**300, "1.5", "abc", ""]),
    _weird,
)
_timestamp = st.one_of(
    st.sampled_from(
        [
            1_736_164_800,
            1_736_164_800_123,
            1_736_164_800.5,
            1_736_164_800_123.25,
            "2025-01-06T12:00:30.914Z",
            "2025-01-06T12:00:30",
            "2025-01-06T12:00:30+02:00",
            "2025-01-06",
            "1736164800",
            " 1736164800 ",
            "\x1c1736164800",
            "1_736_164_800",
            "\uff11\uff17\uff13\uff16\uff11\uff16\uff14\uff18\uff10\uff10",
            "2025-13-01T00:00:00Z",
            "garbage",
            "",
            "1e400",
            "nan",
            "-inf",
            1_736_164_800 + 10**6,
            1_736_164_800 + 86_400 + 100,
            946_684_799,
            946_684_800,
            10**20,
            2**60,
            0,
        ]
    ),
    st.floats(min_value=9e8, max_value=2e12),
    st.integers(min_value=9 * 10**8, max_value=2 * 10**12),
    _weird,
    _text,
)
_impression = st.one_of(
    st.lists(st.one_of(st.sampled_from(["a", "", "x" * 257]), _text, _weird), max_size=3),
    _weird,
    _text,
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(st.sampled_from(["e-1", "e-2"]), _text, _weird),
    "player_id": st.one_of(st.sampled_from(["p-1", "p-2"]), _text, _weird),
    "session_id": _session,
    "game_id": _game,
    "timestamp": _timestamp,
    "platform": st.one_of(st.sampled_from(["ios", "web"]), _text, _weird),
    "country": st.one_of(st.sampled_from(["DE", "GB"]), _text, _weird),
    "currency": st.one_of(st.sampled_from(["EUR", "GBP"]), _text, _weird),
    "stake": _number,
    "win": _number,
    "duration_ms": st.one_of(st.integers(-10, 10**6), _number),
    "position": st.one_of(st.integers(-10, 100), _number),
    "lobby_section": st.one_of(st.sampled_from(["popular", "for-you"]), _text, _weird),
    "recommendation_id": st.one_of(st.sampled_from(["r-1", "x" * 40, " " + "x" * 40, "x" * 41]), _text, _weird),
    "impression": _impression,
}
_CAMEL = {
    "event_id": "eventId",
    "player_id": "playerId",
    "session_id": "sessionId",
    "game_id": "gameId",
    "duration_ms": "durationMs",
    "lobby_section": "lobbySection",
    "recommendation_id": "recommendationId",
}
_event_type = st.one_of(
    st.sampled_from(["game_round"] * 6 + ["bet_placed"] * 3 + ["spin", "game_launch", "heartbeat", "nope"]),
    st.sampled_from([" game_round", "game_round ", "GAME_ROUND", "", None, 5, ["game_round"], {"a": 1}]),
)


@st.composite
def raw_events(draw: st.DrawFn) -> tuple[Any, float | None]:
    """One raw event: mostly a plausible round, with any field missing, broken, doubled or odd."""
    data: dict[str, Any] = {}
    # The key spelling of the type: snake, camel, both (same or different values), or absent.
    spelling = draw(st.sampled_from(["snake"] * 8 + ["camel", "both", "both-differ", "absent"]))
    event_type = draw(_event_type)
    if spelling in ("snake", "both", "both-differ"):
        data["event_type"] = event_type
    if spelling in ("camel", "both"):
        data["eventType"] = event_type
    if spelling == "both-differ":
        data["eventType"] = draw(_event_type)
    for name, values in _FIELDS.items():
        presence = draw(
            st.sampled_from(
                ["good"] * 6 + ["absent"] * 3 + ["broken", "none", "camel", "both"]
                if name in ("session_id", "game_id", "timestamp")
                else ["good"] * 3 + ["absent"] * 6 + ["broken", "none", "camel", "both"]
            )
        )
        if presence == "absent":
            continue
        good = {
            "event_id": "e-1",
            "player_id": "p-1",
            "session_id": draw(st.sampled_from(["s-1", "s-2"])),
            "game_id": draw(st.sampled_from(["g-1", "g-2", "g-3"])),
            "timestamp": draw(st.sampled_from([1_736_164_800, 1_736_164_800_123, "2025-01-06T12:00:30.914Z", 1.7e9])),
            "platform": "ios",
            "country": "DE",
            "currency": "EUR",
            "stake": draw(st.sampled_from([0.1, 2, 0.0])),
            "win": 0.04,
            "duration_ms": 1200,
            "position": 3,
            "lobby_section": "popular",
            "recommendation_id": "r-1",
            "impression": None,
        }[name]
        value = draw(values) if presence == "broken" else None if presence == "none" else good
        camel = _CAMEL.get(name, name)
        if presence == "camel":
            data[camel] = good
        elif presence == "both":
            data[name] = good
            data[camel] = draw(st.one_of(st.just(good), values))
        else:
            data[name] = value
    if draw(st.booleans()):
        data["extra_key"] = draw(_weird)
    arrival = draw(st.sampled_from([ARRIVAL, ARRIVAL, ARRIVAL, None, 946_684_900.0, ARRIVAL + 10**7]))
    return data, arrival


_GOOD_ROUND: dict[str, Any] = {
    "event_id": "e-1",
    "player_id": "p-1",
    "timestamp": 1_736_164_800_123,
    "platform": "ios",
    "country": "DE",
    "currency": "EUR",
    "stake": 0.1,
    "win": 0.04,
    "duration_ms": 1200,
    "position": 3,
    "lobby_section": "popular",
}


@st.composite
def nearly_valid_rounds(draw: st.DrawFn) -> tuple[Any, float | None]:
    """A valid repeatable round with one or two flaws (a field broken, missing, None, or also
    under its camelCase key): the boundary between what the pre-check may and may not answer."""
    data: dict[str, Any] = {
        "event_type": draw(st.sampled_from(["game_round", "bet_placed", "spin"])),
        "session_id": draw(st.sampled_from(["s-1", "s-2"])),
        "game_id": draw(st.sampled_from(["g-1", "g-2"])),
        **_GOOD_ROUND,
    }
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["event_type", *_FIELDS]))
        how = draw(st.sampled_from(["break", "break", "break", "pad", "drop", "none", "camel", "camel-other"]))
        values = _event_type if name == "event_type" else _FIELDS[name]
        camel = "eventType" if name == "event_type" else _CAMEL.get(name, name)
        if how == "break":
            data[name] = draw(values)
        elif how == "pad":  # whitespace that Python's strip, pydantic's, both or neither remove
            pads = st.sampled_from(["", " ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\u00a0", "\x85", "\u2003", "\u3000"])
            value = data.get(name)
            data[name] = draw(pads) + (value if isinstance(value, str) else str(value)) + draw(pads)
        elif how == "drop":
            data.pop(name, None)
        elif how == "none":
            data[name] = None
        elif how == "camel":
            data[camel] = data.pop(name, None)
        else:
            data[camel] = draw(values)
    arrival = draw(st.sampled_from([ARRIVAL, ARRIVAL, ARRIVAL, None, 946_684_900.0, ARRIVAL + 10**7]))
    return data, arrival


# -- the properties ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.one_of(raw_events(), nearly_valid_rounds()), min_size=1, max_size=40), memory=st.integers(1, 8)
)
def test_precheck_gives_the_full_paths_outcome_on_generated_and_broken_events(
    events: list[tuple[Any, float | None]], memory: int
) -> None:
    _run_both(MAPPING, memory, events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.one_of(raw_events(), nearly_valid_rounds()), min_size=1, max_size=40), memory=st.integers(1, 8)
)
def test_precheck_gives_the_full_paths_outcome_with_every_property_kind(
    events: list[tuple[Any, float | None]], memory: int
) -> None:
    """A mapping whose collapsed type copies every field into properties (numbers and text) and
    takes an int eventValue: the properties' length bound and the number rules are exercised."""
    _run_both(WIDE_MAPPING, memory, events)


def _generated(n: int) -> list[dict[str, Any]]:
    events = generate_events(
        generate_catalog(50, 3), n_players=300, seed=3, start=1_736_164_800.0, n_sessions=10**6, config=DEFAULT_CONFIG
    )
    return list(itertools.islice(events, n))


GENERATED = _generated(3000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, len(GENERATED) - 60),
    edits=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(sorted(_FIELDS)), st.sampled_from(["drop", "break", "camel"])),
        max_size=12,
    ),
    data=st.data(),
)
def test_precheck_on_a_generated_stream_with_corrupted_events(
    start: int, edits: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    """Real generator output (a window of sixty events, so rounds repeat), some corrupted."""
    window = [dict(e) for e in GENERATED[start : start + 60]]
    for index, name, how in edits:
        event = window[index]
        if how == "drop":
            event.pop(name, None)
        elif how == "camel" and name in event:
            event[_CAMEL.get(name, name)] = event[name]
        else:
            event[name] = data.draw(_FIELDS[name])
    arrival = ARRIVAL + 3 * 86_400
    _run_both(MAPPING, 200_000, [(e, arrival) for e in window])


def test_the_precheck_answers_for_the_generators_repeated_rounds() -> None:
    """Not vacuous: on a generated stream nearly every repeated round or bet is recognised early."""
    arrival = ARRIVAL + 3 * 86_400
    fast, slow = _pair(MAPPING, 200_000)
    collapsed = early = 0
    for position, event in enumerate(GENERATED):
        source = Source("shard-1", "4959", 0, position, arrival)
        answered = fast._precheck.collapse_id(event, source)
        got, expected = fast.normalize(event, source), slow.normalize(event, source)
        assert got == expected
        if isinstance(expected, Drop) and expected.reason is DropReason.COLLAPSED:
            collapsed += 1
            early += answered is not None
    assert collapsed > 1000
    assert early == collapsed


def test_a_broken_repeat_of_a_played_game_is_still_dead_lettered() -> None:
    """The caveat of a pre-check done carelessly: a later round of an already played game that
    is invalid must keep its bad-input reason, never count as collapsed."""
    fast = Normalizer(MAPPING)
    source = Source("shard-1", "1", 0, 0, ARRIVAL)
    first = {"event_type": "game_round", "session_id": "s", "game_id": "g", "timestamp": 1_736_164_800, "stake": 1}
    assert isinstance(fast.normalize(first, source), PersonalizeEvent)
    repeats = [
        ({**first, "stake": "lots"}, DropReason.INVALID_FIELD),
        ({**first, "stake": math.inf}, DropReason.INVALID_FIELD),
        ({**first, "timestamp": "yesterday"}, DropReason.BAD_TIMESTAMP),
        ({**first, "timestamp": 1_736_164_800 + 10**7}, DropReason.BAD_TIMESTAMP),
        ({**first, "currency": "x" * 1100}, DropReason.TOO_LARGE),
        ({**first, "player_id": "p" * 300}, DropReason.TOO_LARGE),
        ({**first, "position": "third"}, DropReason.INVALID_FIELD),
        ({**first, "platform": "a\ud800"}, DropReason.INVALID_FIELD),
        ({**first, "impression": ["x" * 300]}, DropReason.TOO_LARGE),
    ]
    for event, reason in repeats:
        outcome = fast.normalize(event, source)
        assert isinstance(outcome, Drop) and outcome.reason is reason, (event, outcome)
    again = fast.normalize(dict(first), source)
    assert again == Drop(DropReason.COLLAPSED, collapsed_event_id("s", "g", "play"))
