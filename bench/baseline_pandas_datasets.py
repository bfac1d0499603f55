"""The comparison point of ``bench/batch_datasets.py``: the datasets as a data engineer writes them with pandas.

Not run by hand (``bench/batch_datasets.py`` runs it as a child process and reads its peak RSS). The
straightforward way: ``pd.read_sql`` of each query into a DataFrame, the transformation in pandas
(event types mapped, epoch seconds, what Personalize rejects dropped, repeated interactions dropped),
then ``to_csv``. It reads the same SQL (``batch/default_queries.yaml``) with the same event mapping,
and writes the same CSV columns and rows as ``batch datasets``; what it does not do is stream (every
table is one DataFrame) or run the stream's normalization row by row.

Prints one JSON object on stdout: rows read and written and seconds, per dataset.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine

from batch.queries import INTERACTION_FIELDS, DatasetField, DatasetQueries, RecordQuery
from clickstream.mapping import EventMapping

MAX_ID = 256
EARLIEST = pd.Timestamp("2000-01-01", tz="UTC")


def _join(value: Any) -> Any:
    """A categorical value: a JSON array text or a list becomes ``a|b``."""
    if isinstance(value, str) and value.startswith("["):
        return "|".join(json.loads(value))
    if isinstance(value, list):
        return "|".join(value)
    return value


def _epoch_seconds(column: pd.Series) -> pd.Series:
    moments = pd.to_datetime(column, utc=True, format="ISO8601")
    return (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _field(frame: pd.DataFrame, spec: DatasetField) -> pd.Series:
    column = frame[spec.source_column]
    if spec.categorical:
        return column.map(_join)
    if spec.type in ("int", "long"):
        if column.dtype == object or str(column.dtype).startswith(("str", "string", "datetime")):
            return _epoch_seconds(column)
        return column.astype("int64")
    if spec.type in ("float", "double"):
        return column.astype("float64")
    if spec.type == "boolean":
        return column.map({1: "true", 0: "false"})
    return column


def records(engine: Any, query: RecordQuery, path: Path) -> dict[str, Any]:
    started = time.monotonic()
    frame = pd.read_sql(query.sql, engine)
    out = pd.DataFrame({spec.name: _field(frame, spec) for spec in query.fields})
    first = query.fields[0].name
    out = out.dropna(subset=[first]).drop_duplicates(subset=[first])
    out = out[out[first].astype(str).str.len() <= MAX_ID]
    out.to_csv(path, index=False)
    return {"read": len(frame), "written": len(out), "seconds": time.monotonic() - started}


def interactions(engine: Any, queries: DatasetQueries, mapping: EventMapping, path: Path) -> dict[str, Any]:
    started = time.monotonic()
    frames = []
    for source in queries.interactions.sources:
        frame = pd.read_sql(source.sql, engine)
        rule = mapping.interactions[source.event_type]
        frame["EVENT_TYPE"] = rule.event_type
        frame["EVENT_VALUE"] = frame[rule.value] if rule.value and rule.value in frame else math.nan
        frame["collapse"] = rule.collapse
        # Only the properties the mapping sends for this event type become metadata.
        for spec in queries.interactions.metadata:
            column = spec.name.lower()
            sent = column in rule.properties and column in frame
            frame[spec.name] = frame[column] if sent else None
        frames.append(frame)
    read = sum(len(f) for f in frames)
    frame = pd.concat(frames, ignore_index=True)
    del frames
    # Personalize rejects an interaction without a user, an item or a session, or with an id too long.
    frame = frame.dropna(subset=["player_id", "game_id", "session_id"])
    for column in ("player_id", "game_id", "session_id"):
        frame = frame[frame[column].str.len() <= MAX_ID]
    moments = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    latest = pd.Timestamp(datetime.now(UTC)) + pd.Timedelta(days=1)
    frame = frame[(moments >= EARLIEST) & (moments <= latest)]
    frame["TIMESTAMP"] = _epoch_seconds(frame["timestamp"])
    # Repeated rounds of one game in one session are one interaction; a repeated event id is a duplicate.
    collapsed = frame[frame["collapse"]].drop_duplicates(subset=["session_id", "game_id", "EVENT_TYPE"])
    others = frame[~frame["collapse"]]
    if "event_id" in others:
        others = others[others["event_id"].isna() | ~others["event_id"].duplicated()]
    frame = pd.concat([collapsed, others])
    frame["USER_ID"] = frame["player_id"]
    frame["ITEM_ID"] = frame["game_id"]
    columns = [*INTERACTION_FIELDS, *(spec.name for spec in queries.interactions.metadata)]
    frame.to_csv(path, columns=columns, index=False)
    return {"read": read, "written": len(frame), "seconds": time.monotonic() - started}


def catalog(engine: Any, queries: DatasetQueries, path: Path) -> dict[str, Any]:
    started = time.monotonic()
    frame = pd.read_sql(queries.catalog.sql, engine)
    for column in queries.catalog.lists:
        frame[column] = frame[column].map(lambda v: json.loads(v) if isinstance(v, str) else v)
    games = json.loads(frame.to_json(orient="records", date_format="iso"))
    body = {"version": 1, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "games": games}
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    return {"read": len(frame), "written": len(frame), "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    queries = DatasetQueries.load(None)
    mapping = EventMapping.load(None)
    engine = create_engine(args.database_url)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = {
        "items": records(engine, queries.items, args.out / "items.csv"),
        "users": records(engine, queries.users, args.out / "users.csv"),
        "interactions": interactions(engine, queries, mapping, args.out / "interactions.csv"),
        "catalog": catalog(engine, queries, args.out / "games.json"),
    }
    result["seconds"] = time.monotonic() - started  # type: ignore[assignment]
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
