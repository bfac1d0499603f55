"""batch.transform: the metadata of an interaction's ``properties`` is decoded once and remembered.

Whatever comes from the memory must be what decoding gives: the same values for the same properties,
different values for different ones, and an invalid value dropped (and counted) every time it comes.
"""

from __future__ import annotations

from typing import Any

from batch.queries import DatasetField, DatasetQueries
from batch.transform import INVALID_METADATA, InteractionTransform
from clickstream.mapping import EventMapping

QUERIES = DatasetQueries.load()
SESSIONS_SOURCE = QUERIES.interactions.sources[0]


def _row(session: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session,
        "player_id": "p-000042",
        "game_id": "g-00017",
        "timestamp": "2026-11-01 08:15:30.250000",
        "stake": 0.5,
        "currency": "GBP",
        "platform": "ios",
        "country": "GB",
    }
    return {**row, **changes}


def test_remembered_metadata_follows_each_rows_properties() -> None:
    transform = InteractionTransform(EventMapping.default(), QUERIES.interactions.metadata)
    rows = [
        _row("s-1"),
        _row("s-2", platform="web", country="SE", currency="SEK"),
        _row("s-3"),
        _row("s-4", platform=None),
        _row("s-5", platform="web", country="SE", currency="SEK"),
    ]
    records = [transform.transform(row, SESSIONS_SOURCE, n) for n, row in enumerate(rows)]
    assert [r.metadata if r else None for r in records] == [
        ("ios", "GB", "GBP"),
        ("web", "SE", "SEK"),
        ("ios", "GB", "GBP"),
        ("", "GB", "GBP"),
        ("web", "SE", "SEK"),
    ]
    assert not transform.dropped


def test_an_invalid_metadata_value_is_dropped_every_time() -> None:
    metadata = (
        DatasetField(name="PLATFORM", type="long", nullable=True),
        DatasetField(name="COUNTRY", categorical=True, nullable=True),
    )
    transform = InteractionTransform(EventMapping.default(), metadata)
    assert transform.transform(_row("s-1"), SESSIONS_SOURCE, 0) is None
    assert transform.transform(_row("s-2"), SESSIONS_SOURCE, 1) is None
    kept = transform.transform(_row("s-3", platform=None), SESSIONS_SOURCE, 2)
    assert kept is not None and kept.metadata == ("", "GB")
    assert transform.dropped == {INVALID_METADATA: 2}
