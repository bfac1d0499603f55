"""A game with an empty categorical value stays in the Items dataset; an item dropped as invalid is named.

A withdrawn game is licensed nowhere (``jurisdictions`` ``[]``): JURISDICTIONS is nullable in the shipped
queries, so the game's row has an empty JURISDICTIONS, which Personalize takes for a ``["null",
"string"]`` field (checked with the Personalize emulator's own schema and CSV readers), and its past
plays still name a known item. When a queries file declares a field that may be empty as not nullable,
the item is dropped, and the report and the exit message name it and the reason, not a generic hint.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from batch.cli import main as batch_main
from batch.database import RowSource
from batch.datasets import DatasetBuilder
from batch.queries import DEFAULT_QUERIES_PATH, DatasetQueries
from batch.sinks import LocalFolderSink
from clickstream.mapping import EventMapping
from devstack.personalize.control.importer import parse_csv
from devstack.personalize.control.schemas import parse_schema
from tests.unit.test_batch_parallel import platform_database

WITHDRAWN = "g-3"


def with_a_withdrawn_game(path: Path) -> str:
    """The platform database, with WITHDRAWN disabled and licensed nowhere; it has been played."""
    url = platform_database(path, 3000)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE games SET jurisdictions = '[]', enabled = 0 WHERE id = ?", (WITHDRAWN,))
        played = connection.execute("SELECT count(*) FROM game_sessions WHERE game_id = ?", (WITHDRAWN,)).fetchone()
    connection.close()
    assert played[0] > 0
    return url


def queries_without_nullable_jurisdictions(folder: Path) -> Path:
    """The shipped queries as they were: JURISDICTIONS a non-nullable categorical field."""
    text = DEFAULT_QUERIES_PATH.read_text()
    old = "{name: JURISDICTIONS, categorical: true, nullable: true}"
    assert old in text
    path = folder / "queries.yaml"
    path.write_text(text.replace(old, "{name: JURISDICTIONS, categorical: true}"))
    return path


def test_a_game_licensed_nowhere_stays_in_the_items_dataset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    builder = DatasetBuilder(
        RowSource(with_a_withdrawn_game(tmp_path / "platform.db"), chunk_size=500),
        LocalFolderSink(out),
        DatasetQueries.load(),
        EventMapping.default(),
        parallel=False,
    )
    summary = builder.run()
    assert summary.published, summary.problems
    assert summary.items.dropped == {} and summary.items.written == 20
    assert summary.minimums.ok

    rows = list(csv.DictReader(io.StringIO((out / "items.csv").read_text())))
    withdrawn = next(row for row in rows if row["ITEM_ID"] == WITHDRAWN)
    assert (withdrawn["JURISDICTIONS"], withdrawn["AVAILABLE"]) == ("", "false")
    schema_text = (out / "items.schema.json").read_text()
    field = next(field for field in json.loads(schema_text)["fields"] if field["name"] == "JURISDICTIONS")
    assert field == {"name": "JURISDICTIONS", "type": ["null", "string"], "categorical": True}
    imported = parse_csv([("items.csv", (out / "items.csv").read_bytes())], parse_schema(schema_text), "ITEMS")
    assert imported.records[WITHDRAWN]["AVAILABLE"] == ("false",), "Personalize's CSV reader takes the row"
    assert "JURISDICTIONS" not in imported.records[WITHDRAWN], "its JURISDICTIONS is null"
    catalog = json.loads((out / "games.json").read_text())
    assert WITHDRAWN not in {game["game_id"] for game in catalog["games"]}, "a disabled game is not in the lobby"


def test_an_item_dropped_as_invalid_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATCH_QUERIES_FILE", str(queries_without_nullable_jurisdictions(tmp_path)))
    url = with_a_withdrawn_game(tmp_path / "platform.db")
    status = batch_main(["datasets", "--out", str(tmp_path / "out"), "--database-url", url])
    stdout = capsys.readouterr().out
    assert status == 1
    assert "items:            19 of 20 rows; dropped invalid JURISDICTIONS 1" in stdout
    assert f"  invalid:        {WITHDRAWN}: JURISDICTIONS: empty, but the field is not nullable" in stdout
    assert (
        f"interactions are of games dropped from items.csv as invalid: {WITHDRAWN} (JURISDICTIONS: empty, but "
        "the field is not nullable)"
    ) in stdout
    assert "`nullable: true`" in stdout
    assert "--allow-small" not in stdout, "the cause is an invalid item, not too little data"
    assert list((tmp_path / "out").iterdir()) == []
