"""batch.transform: a database row -> a raw clickstream event -> the stream's normalization -> a CSV line.

The interactions the models are trained on must be the ones the stream sends afterwards: a game
session row becomes the ``play`` interaction the stream collapses that session's rounds into, with the
same eventId, timestamp and eventValue. Checked on a captured clickstream folded into game sessions
the way the platform records them (``pam.db.play_history``).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from batch.errors import ConfigurationError
from batch.minimums import InteractionStats
from batch.queries import DatasetField, DatasetQueries, InteractionSource, RecordQuery
from batch.schemas import interactions_schema, items_schema, users_schema
from batch.transform import (
    FieldValueError,
    InteractionRecord,
    InteractionTransform,
    RecordTransform,
    catalog_entry,
    categories,
    encode_value,
    raw_event,
)
from clickstream.generator import Catalog
from clickstream.mapping import EventMapping
from clickstream.normalize import Normalizer, Source, collapsed_event_id
from clickstream.outcomes import PersonalizeEvent
from devstack.personalize.control.importer import parse_csv
from devstack.personalize.control.schemas import check_dataset_type, parse_schema
from pam.db.play_history import PlayHistoryRecorder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QUERIES = DatasetQueries.load()
SESSIONS_SOURCE, FAVORITES_SOURCE = QUERIES.interactions.sources
SESSION = "3f2b7a9e-5a61-4d2e-9a7c-0c3c4a1d8e11"
STARTED = datetime(2026, 11, 1, 8, 15, 30, 250_000, tzinfo=UTC)

#: A game_sessions row as the default query returns it from PostgreSQL (aware datetimes, decimals).
GAME_SESSION_ROW: dict[str, Any] = {
    "session_id": SESSION,
    "player_id": "p-000042",
    "game_id": "g-00017",
    "timestamp": STARTED,
    "stake": Decimal("0.50"),
    "currency": "GBP",
    "platform": "ios",
    "country": "GB",
}


def _transform() -> InteractionTransform:
    return InteractionTransform(EventMapping.default(), QUERIES.interactions.metadata)


def _csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def test_the_default_sources_are_game_sessions_and_favorites() -> None:
    assert (SESSIONS_SOURCE.name, SESSIONS_SOURCE.event_type) == ("game_sessions", "game_round")
    assert (FAVORITES_SOURCE.name, FAVORITES_SOURCE.event_type) == ("favorites", "favorite_added")


def test_a_game_session_row_becomes_a_game_round_event_with_the_first_stake() -> None:
    event = raw_event(GAME_SESSION_ROW, "game_round")
    assert event == {
        "event_type": "game_round",
        "session_id": SESSION,
        "player_id": "p-000042",
        "game_id": "g-00017",
        "timestamp": STARTED.timestamp(),
        "stake": 0.5,
        "currency": "GBP",
        "platform": "ios",
        "country": "GB",
    }


def test_null_columns_are_left_out_of_the_event() -> None:
    event = raw_event({**GAME_SESSION_ROW, "player_id": None, "platform": None}, "game_round")
    assert "player_id" not in event
    assert "platform" not in event


def test_row_to_csv_line() -> None:
    transform = _transform()
    record = transform.transform(GAME_SESSION_ROW, SESSIONS_SOURCE, 0)
    assert record == InteractionRecord(
        event_id=collapsed_event_id(SESSION, "g-00017", "play"),
        user_id="p-000042",
        item_id="g-00017",
        timestamp=int(STARTED.timestamp()),
        event_type="play",
        event_value=0.5,
        metadata=("ios", "GB", "GBP"),
    )
    assert transform.header == [
        "USER_ID",
        "ITEM_ID",
        "TIMESTAMP",
        "EVENT_TYPE",
        "EVENT_VALUE",
        "PLATFORM",
        "COUNTRY",
        "CURRENCY",
    ]
    assert _csv_line(record.csv_values()) == "p-000042,g-00017,1793520930,play,0.5,ios,GB,GBP\n"
    assert int(STARTED.timestamp()) == 1793520930


def test_sqlite_text_times_and_float_amounts_give_the_same_record() -> None:
    """SQLite hands text() queries naive UTC text and floats; PostgreSQL aware datetimes and decimals."""
    sqlite_row = {**GAME_SESSION_ROW, "timestamp": "2026-11-01 08:15:30.250000", "stake": 0.5}
    postgres = _transform().transform(GAME_SESSION_ROW, SESSIONS_SOURCE, 0)
    sqlite = _transform().transform(sqlite_row, SESSIONS_SOURCE, 0)
    assert sqlite == postgres


def test_metadata_absent_from_the_row_is_empty() -> None:
    record = _transform().transform({**GAME_SESSION_ROW, "platform": None, "country": None}, SESSIONS_SOURCE, 0)
    assert record is not None
    assert record.csv_values()[-3:] == ["", "", "GBP"]


def test_a_favorite_row_keeps_its_event_id() -> None:
    row = {
        "event_id": "favorite:p-000042:g-00017",
        "session_id": SESSION,
        "player_id": "p-000042",
        "game_id": "g-00017",
        "timestamp": STARTED,
    }
    record = _transform().transform(row, FAVORITES_SOURCE, 0)
    assert record is not None
    assert (record.event_id, record.event_type, record.event_value) == ("favorite:p-000042:g-00017", "favorite", None)
    assert _csv_line(record.csv_values()) == "p-000042,g-00017,1793520930,favorite,,,,\n"


def test_drops_are_counted_by_reason() -> None:
    transform = _transform()
    rows = [
        GAME_SESSION_ROW,
        # The same session and game again: the stream collapses it into the first play.
        {**GAME_SESSION_ROW, "timestamp": datetime(2026, 11, 1, 9, tzinfo=UTC)},
        # Play without an account: Personalize needs a user.
        {**GAME_SESSION_ROW, "session_id": "s-anonymous", "player_id": None},
        {**GAME_SESSION_ROW, "session_id": None},
        {**GAME_SESSION_ROW, "session_id": "s-2", "game_id": None},
        {**GAME_SESSION_ROW, "session_id": "s-3", "timestamp": datetime(1999, 12, 31, tzinfo=UTC)},
        {**GAME_SESSION_ROW, "session_id": "s-4", "timestamp": None},
        {**GAME_SESSION_ROW, "session_id": "s-5", "player_id": "p" * 300},
        {**GAME_SESSION_ROW, "session_id": "s-6", "stake": "lots"},
        {**GAME_SESSION_ROW, "session_id": "s-7"},
    ]
    records = [transform.transform(row, SESSIONS_SOURCE, position) for position, row in enumerate(rows)]
    assert [r is not None for r in records] == [True, False, False, False, False, False, False, False, False, True]
    assert dict(transform.dropped) == {
        "collapsed": 1,
        "missing_user": 1,
        "missing_session": 1,
        "missing_item": 1,
        "bad_timestamp": 2,
        "too_large": 1,
        "invalid_field": 1,
    }


def test_a_repeated_favorite_is_a_duplicate() -> None:
    transform = _transform()
    row = {"event_id": "favorite:p-1:g-1", "session_id": "s", "player_id": "p-1", "game_id": "g-1", "timestamp": 1.79e9}
    assert transform.transform(row, FAVORITES_SOURCE, 0) is not None
    assert transform.transform(row, FAVORITES_SOURCE, 1) is None
    assert transform.dropped == {"duplicate": 1}


def test_rows_without_event_id_get_a_deterministic_one() -> None:
    row = {"session_id": "s", "player_id": "p-1", "game_id": "g-1", "timestamp": 1.79e9}
    first = _transform().transform(row, FAVORITES_SOURCE, 3)
    again = _transform().transform(row, FAVORITES_SOURCE, 3)
    assert first is not None and again is not None
    assert first.event_id == again.event_id


def test_sources_and_metadata_must_fit_the_mapping() -> None:
    transform = _transform()
    transform.check(QUERIES.interactions.sources)
    with pytest.raises(ConfigurationError, match="'game_exit' is not an interaction"):
        transform.check([InteractionSource(name="exits", event_type="game_exit", sql="SELECT 1")])
    odd = InteractionTransform(EventMapping.default(), [DatasetField(name="SHOE_SIZE", nullable=True)])
    with pytest.raises(ConfigurationError, match="shoeSize"):
        odd.check(QUERIES.interactions.sources)


# --- the same interactions as the stream ----------------------------------------------------------------


def _stream_plays(events: list[dict[str, Any]]) -> dict[tuple[str, str], PersonalizeEvent]:
    normalizer = Normalizer(EventMapping.default())
    plays: dict[tuple[str, str], PersonalizeEvent] = {}
    for position, event in enumerate(events):
        outcome = normalizer.normalize(event, Source("shardId-000000000000", str(position)))
        if isinstance(outcome, PersonalizeEvent) and outcome.event_type == "play":
            assert outcome.item_id is not None
            plays[(outcome.session_id, outcome.item_id)] = outcome
    return plays


def _game_session_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The platform's game sessions of ``events``, projected as the default game_sessions query does."""
    catalog = Catalog.from_json(json.loads((FIXTURES / "catalog.json").read_text()))
    recorder = PlayHistoryRecorder({game.game_id: game.release_date for game in catalog})
    records = [record for event in events for record in recorder.add(event)] + recorder.finish()
    return [
        {
            "session_id": r.session_id,
            "player_id": r.player_id,
            "game_id": r.game_id,
            "timestamp": r.started_at,
            "stake": Decimal(str(round(r.first_stake, 2))),
            "currency": r.currency,
            "platform": r.platform,
            "country": r.country,
        }
        for r in records
    ]


def test_same_event_ids_timestamps_and_values_as_the_stream() -> None:
    events = [json.loads(line) for line in (FIXTURES / "clean.jsonl").read_text().splitlines() if line.strip()]
    plays = _stream_plays(events)
    rows = _game_session_rows(events)
    transform = _transform()
    records = [transform.transform(row, SESSIONS_SOURCE, position) for position, row in enumerate(rows)]
    batch = {(row["session_id"], row["game_id"]): record for row, record in zip(rows, records, strict=True)}

    assert set(batch) == set(plays), "one game session row per (session, game) the stream plays"
    anonymous = 0
    for key, play in plays.items():
        record = batch[key]
        if play.user_id is None:
            assert record is None
            anonymous += 1
            continue
        assert record is not None
        assert record.event_id == play.event_id == collapsed_event_id(key[0], key[1], "play")
        assert record.timestamp == int(play.sent_at)
        assert record.event_value == play.event_value
        assert (record.user_id, record.item_id, record.event_type) == (play.user_id, play.item_id, "play")
    assert len(plays) >= 20
    assert transform.dropped == ({"missing_user": anonymous} if anonymous else {})


# --- values, items and users ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["GB", "IE"], ["GB", "IE"]),
        (("GB",), ["GB"]),
        ('["GB", "IE", "MT"]', ["GB", "IE", "MT"]),
        ("GB|IE", ["GB", "IE"]),
        (" slots ", ["slots"]),
        (["a|b", None, "", "c"], ["a", "b", "c"]),
        ("[not json", ["[not json"]),
        ([], []),
    ],
)
def test_categories(value: Any, expected: list[str]) -> None:
    assert categories(value) == expected


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (DatasetField(name="JURISDICTIONS", categorical=True), ["GB", "IE", "MT"], "GB|IE|MT"),
        (DatasetField(name="JURISDICTIONS", categorical=True), '["GB", "IE"]', "GB|IE"),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), date(2026, 11, 1), "1793491200"),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), "2026-11-01", "1793491200"),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), datetime(2026, 11, 1, 0, 0, 1), "1793491201"),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), "2026-11-01 00:00:01.900000", "1793491201"),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), 1793491201.9, "1793491201"),
        (DatasetField(name="RTP", type="float"), Decimal("0.9612"), "0.9612"),
        (DatasetField(name="RTP", type="float"), 0.96, "0.96"),
        (DatasetField(name="ROUNDS", type="int"), Decimal("12"), "12"),
        (DatasetField(name="ENABLED", type="boolean"), 1, "true"),
        (DatasetField(name="ENABLED", type="boolean"), False, "false"),
        (DatasetField(name="TITLE"), "  Golden Fortune ", "Golden Fortune"),
        (DatasetField(name="COUNTRY", nullable=True), None, ""),
        (DatasetField(name="JURISDICTIONS", categorical=True, nullable=True), [], ""),
        (DatasetField(name="JURISDICTIONS", categorical=True, nullable=True), "[]", ""),
    ],
)
def test_encode_value(spec: DatasetField, value: Any, expected: str) -> None:
    assert encode_value(spec, value) == expected


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (DatasetField(name="COUNTRY"), None),
        (DatasetField(name="COUNTRY"), "   "),
        (DatasetField(name="JURISDICTIONS", categorical=True), []),
        (DatasetField(name="RTP", type="float"), "high"),
        (DatasetField(name="RTP", type="float"), float("nan")),
        (DatasetField(name="CREATION_TIMESTAMP", type="long"), "soon"),
        (DatasetField(name="ENABLED", type="boolean"), "maybe"),
        (DatasetField(name="TAGS"), ["a", "b"]),
    ],
)
def test_encode_value_refuses(spec: DatasetField, value: Any) -> None:
    with pytest.raises(FieldValueError):
        encode_value(spec, value)


def test_item_rows_become_csv_lines_and_bad_rows_are_counted() -> None:
    transform = RecordTransform(QUERIES.items, what="items")
    row = {
        "id": "g-00017",
        "provider": "Kestrel Live",
        "category": "live-casino",
        "volatility": "low",
        "rtp": Decimal("0.9730"),
        "jurisdictions": ["GB", "IE", "SE"],
        "release_date": date(2024, 3, 1),
        "available": "true",
    }
    values = transform.transform(row)
    assert values is not None
    assert _csv_line(transform.header) == (
        "ITEM_ID,PROVIDER,CATEGORY,VOLATILITY,RTP,JURISDICTIONS,CREATION_TIMESTAMP,AVAILABLE\n"
    )
    assert _csv_line(values) == "g-00017,Kestrel Live,live-casino,low,0.973,GB|IE|SE,1709251200,true\n"
    assert transform.transform({**row, "rtp": None}) is None
    assert transform.transform({**row, "id": "g" * 300}) is None
    assert transform.dropped == {"invalid RTP": 1, "invalid ITEM_ID": 1}
    assert transform.rejected == {
        "g-00017": "RTP: empty, but the field is not nullable",
        "g" * 80: "ITEM_ID: longer than 256 characters",
    }
    withdrawn = transform.transform({**row, "id": "g-00018", "jurisdictions": "[]", "available": "false"})
    assert withdrawn is not None and withdrawn[5] == "", "no jurisdictions: an empty value, the game is kept"


def test_a_query_without_a_declared_column_is_a_configuration_error() -> None:
    transform = RecordTransform(QUERIES.users, what="users")
    with pytest.raises(ConfigurationError, match=r"users query returns no column \['currency'\]"):
        transform.transform({"id": "p-1", "country": "GB", "platform": "ios"})


def test_catalog_entries_are_json() -> None:
    row = {
        "game_id": "g-1",
        "rtp": Decimal("0.9612"),
        "release_date": date(2024, 3, 1),
        "jurisdictions": '["GB", "IE"]',
        "updated_at": datetime(2026, 11, 1, 12),
    }
    assert catalog_entry(row, ["jurisdictions"]) == {
        "game_id": "g-1",
        "rtp": 0.9612,
        "release_date": "2024-03-01",
        "jurisdictions": ["GB", "IE"],
        "updated_at": "2026-11-01T12:00:00+00:00",
    }


# --- schemas, the queries file, minimums ----------------------------------------------------------------


def test_schemas_are_personalize_avro_records() -> None:
    schema = interactions_schema(QUERIES.interactions.metadata)
    assert schema["type"] == "record"
    assert schema["name"] == "Interactions"
    assert schema["namespace"] == "com.amazonaws.personalize.schema"
    assert schema["version"] == "1.0"
    assert schema["fields"][:5] == [
        {"name": "USER_ID", "type": "string"},
        {"name": "ITEM_ID", "type": "string"},
        {"name": "TIMESTAMP", "type": "long"},
        {"name": "EVENT_TYPE", "type": "string"},
        {"name": "EVENT_VALUE", "type": ["null", "float"]},
    ]
    assert {"name": "PLATFORM", "type": ["null", "string"], "categorical": True} in schema["fields"]
    items = items_schema(QUERIES.items.fields)
    assert {"name": "PROVIDER", "type": "string", "categorical": True} in items["fields"]
    # A game licensed nowhere has no jurisdictions: an empty value, null to Personalize.
    assert {"name": "JURISDICTIONS", "type": ["null", "string"], "categorical": True} in items["fields"]
    assert {"name": "CREATION_TIMESTAMP", "type": "long"} in items["fields"]


@pytest.mark.parametrize(
    ("dataset_type", "schema"),
    [
        ("INTERACTIONS", interactions_schema(QUERIES.interactions.metadata)),
        ("ITEMS", items_schema(QUERIES.items.fields)),
        ("USERS", users_schema(QUERIES.users.fields)),
    ],
)
def test_the_personalize_emulator_accepts_the_schemas(dataset_type: str, schema: dict[str, Any]) -> None:
    check_dataset_type(parse_schema(json.dumps(schema)), dataset_type)


def test_the_personalize_emulator_imports_the_csv_lines() -> None:
    transform = _transform()
    record = transform.transform(GAME_SESSION_ROW, SESSIONS_SOURCE, 0)
    assert record is not None
    body = (_csv_line(transform.header) + _csv_line(record.csv_values())).encode()
    schema = parse_schema(json.dumps(interactions_schema(QUERIES.interactions.metadata)))
    imported = parse_csv([("interactions.csv", body)], schema, "INTERACTIONS")
    (interaction,) = imported.interactions
    assert (interaction.user_id, interaction.item_id, interaction.event_type) == ("p-000042", "g-00017", "play")
    assert interaction.timestamp == 1793520930
    assert interaction.event_value == 0.5


def test_a_broken_queries_file_names_itself_and_the_problem(tmp_path: Path) -> None:
    broken = tmp_path / "queries.yaml"
    broken.write_text("version: 1\nitems: {sql: 'SELECT 1', fields: [{name: id}]}\n")
    with pytest.raises(ConfigurationError, match=r"invalid queries file .*queries\.yaml: items\.fields"):
        DatasetQueries.load(broken)
    with pytest.raises(ConfigurationError, match="cannot read the queries file"):
        DatasetQueries.load(tmp_path / "missing.yaml")


def test_the_first_item_field_must_be_item_id() -> None:
    data = QUERIES.model_dump()
    data["items"]["fields"] = list(reversed(data["items"]["fields"]))
    with pytest.raises(ValueError, match="the first field must be ITEM_ID"):
        DatasetQueries.model_validate(data)


def test_metadata_may_not_take_a_reserved_name() -> None:
    with pytest.raises(ValueError, match="may not be named"):
        DatasetQueries.model_validate(
            {**QUERIES.model_dump(), "interactions": {"sources": [], "metadata": [{"name": "EVENT_VALUE"}]}}
        )
    assert RecordQuery.model_fields["fields"].is_required()


def test_minimums_report() -> None:
    stats = InteractionStats(known_items=frozenset({"g-1", "g-2"}))
    for n in range(30):
        stats.add(InteractionRecord(f"e{n}", f"p-{n % 15}", "g-1" if n % 10 else "g-9", 1_793_491_200 + n, "play", 1.0))
    report = stats.report()
    assert not report.ok
    assert [check.ok for check in report.checks] == [False, False, False]
    assert (stats.users, stats.users_with_two, stats.unknown_item_interactions) == (15, 15, 3)
    lines = report.lines()
    assert lines[0] == "Dataset minimums for training (Amazon Personalize):"
    assert "FAIL interactions " in lines[1]
    assert "e.g. g-9" in lines[3]
    assert lines[-1].startswith("NOT ready for training: interactions, users with 2 or more interactions")
