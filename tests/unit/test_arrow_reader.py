"""The Arrow reader (:meth:`batch.database.RowSource.frames`) against the DB-API reader and the row path.

The same generated SQLite database (the default interactions queries over loosely typed tables, with
odd rows: mixed types in one column, text timestamps, NULL ids, huge integers, blobs) goes through the
row path (rows -> :class:`~batch.transform.InteractionTransform`), the columnar path on DB-API chunks
and the columnar path on Arrow frames: byte-identical CSV text and the same drops by reason.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.columnar import ColumnarInteractions
from batch.database import Chunk, RowSource
from batch.minimums import InteractionStats
from batch.queries import DatasetQueries
from batch.transform import InteractionTransform
from clickstream.columnar import NUMBER_FIELDS
from clickstream.mapping import EventMapping

QUERIES = DatasetQueries.load()
MAPPING = EventMapping.default()
METADATA = QUERIES.interactions.metadata
SOURCES = QUERIES.interactions.sources
SCHEMA = """
CREATE TABLE game_sessions (id INTEGER PRIMARY KEY, session_id, player_id TEXT, game_id, started_at,
                            first_stake, currency, platform TEXT, country);
CREATE TABLE favorites (player_id, game_id TEXT, session_id, added_at);
"""
PLAIN_SESSION = ("s-1", "p-1", "g-1", "2026-08-03 00:01:14.927000", 0.5, "GBP", "ios", "GB")

ids = st.one_of(
    st.sampled_from(["p-1", "p-2", "g-1", "g-2", "s-1", "s-2"]),
    st.sampled_from([None, "", " p-1 ", "p,1", "x" * 257, "é-1", "0" * 32, 7, 2**63 - 1, -(2**63), 1.5, b"\x00p"]),
)
times = st.one_of(
    st.sampled_from(
        ["2026-08-03 00:01:14.927000", "2026-08-03 00:01:14", "2026-08-03T00:01:14", "not a time", "1785715369", ""]
    ),
    st.none(),
    st.integers(min_value=0, max_value=2_000_000_000_000),
    st.sampled_from([1785715369.25, 2**62, -(2**63), 1e300]),
)
stakes = st.one_of(st.sampled_from([0.1, 1, 0.0, -0.0, "0.5", "x", 2**60, 2**63 - 1, b"\x01", None]), st.floats())
texts = st.one_of(st.sampled_from(["ios", "GB", "GBP", "a|b", "", " ios", None, 3, 2.5]), st.text(max_size=3))


def session_row(draw: st.DrawFn) -> tuple[Any, ...]:
    return (draw(ids), draw(ids), draw(ids), draw(times), draw(stakes), draw(texts), draw(texts), draw(texts))


sessions_strategy = st.lists(st.composite(session_row)(), max_size=30)
favorites_strategy = st.lists(st.tuples(ids, ids, ids, times), max_size=10)


def make_database(path: Path, sessions: list[tuple[Any, ...]], favorites: list[tuple[Any, ...]]) -> str:
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA)
        connection.executemany(
            "INSERT INTO game_sessions (session_id, player_id, game_id, started_at, first_stake, currency, platform,"
            " country) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            sessions,
        )
        connection.executemany("INSERT INTO favorites VALUES (?, ?, ?, ?)", favorites)
    connection.close()
    return f"sqlite:///{path}"


def row_path(url: str, memory: int) -> tuple[str, Counter[str]]:
    transform = InteractionTransform(MAPPING, METADATA, memory=memory)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    with RowSource(url) as source:
        for query in SOURCES:
            for position, row in enumerate(source.rows(query.sql, what=query.name)):
                record = transform.transform(row, query, position)
                if record is not None:
                    writer.writerow(record.csv_values())
    return text.getvalue(), transform.dropped


def columnar_path(
    url: str, memory: int, size: int, *, arrow: bool, parallel: bool | None = None
) -> tuple[str, Counter[str], Counter[str]]:
    """CSV text, drops, and how many chunks came as frames and as rows (``parallel`` None: chunk by
    chunk; else ``write_all``, with its read and prepare threads when True)."""
    columnar = ColumnarInteractions(MAPPING, METADATA, memory=memory)
    text = io.StringIO()
    stats = InteractionStats(known_items=frozenset({"g-1"}))
    kinds: Counter[str] = Counter()

    def counted(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            kinds["frames" if isinstance(chunk, pl.DataFrame) else "rows"] += 1
            yield chunk

    with RowSource(url) as source:
        for query in SOURCES:
            position = 0
            chunks = counted(
                source.frames(query.sql, what=query.name, size=size, floats=NUMBER_FIELDS)
                if arrow
                else source.chunks(query.sql, what=query.name, size=size)
            )
            if parallel is not None:
                columnar.write_all(query, chunks, text, stats, parallel=parallel)
                continue
            for chunk in chunks:
                if isinstance(chunk, pl.DataFrame):
                    columnar.write_frame(query, chunk, position, text, stats)
                    position += chunk.height
                else:
                    names, rows = chunk
                    columnar.write_chunk(query, names, rows, position, text, stats)
                    position += len(rows)
    return text.getvalue(), columnar.dropped, kinds


def same(url: str, memory: int, size: int) -> Counter[str]:
    lines, dropped = row_path(url, memory)
    dbapi_lines, dbapi_dropped, _ = columnar_path(url, memory, size, arrow=False)
    arrow_lines, arrow_dropped, kinds = columnar_path(url, memory, size, arrow=True)
    parallel_lines, parallel_dropped, parallel_kinds = columnar_path(url, memory, size, arrow=True, parallel=True)
    assert dbapi_lines == lines
    assert arrow_lines == lines
    assert parallel_lines == lines
    assert dbapi_dropped == dropped
    assert arrow_dropped == dropped
    assert parallel_dropped == dropped
    assert parallel_kinds == kinds  # the same chunks, frames and fallback rows alike
    return kinds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plain=st.integers(0, 25),
    sessions=sessions_strategy,
    favorites=favorites_strategy,
    memory=st.integers(1, 8),
    size=st.integers(1, 13),
)
def test_arrow_reader_equals_dbapi_reader_and_row_path(
    plain: int, sessions: list[tuple[Any, ...]], favorites: list[tuple[Any, ...]], memory: int, size: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = make_database(Path(folder) / "platform.db", [PLAIN_SESSION] * plain + sessions, favorites)
        same(url, memory, size)


def test_plain_tables_are_read_as_frames_only(tmp_path: Path) -> None:
    sessions = [
        (f"s-{i}", f"p-{i % 7}", f"g-{i % 3}", f"2026-08-03 00:{i % 60:02}:14", 0.5, "GBP", "ios", None)
        for i in range(100)
    ]
    favorites = [(f"p-{i}", "g-1", None, "2026-08-04 10:00:00") for i in range(20)]
    kinds = same(make_database(tmp_path / "platform.db", sessions, favorites), 200, 16)
    assert kinds == Counter(frames=7 + 2)


def test_an_odd_row_after_plain_batches_reads_the_rest_as_rows(tmp_path: Path) -> None:
    """Mixed types in one column (an integer after reals, text after integers, a huge integer, a blob):
    the Arrow batches up to the odd one, then DB-API rows from that batch's first row on."""
    sessions = (
        [PLAIN_SESSION] * 40
        + [
            ("s-2", "p-2", "g-2", 1785715369, 2, 7, "web", "GB"),
            ("s-3", None, "g-1", "2026-08-03 00:01:14", 2**63 - 1, "GBP", "ios", b"\x00"),
            ("s-4", "p-1", 12, "2026-08-03 00:01:14", "0.5", "EUR", "ios", 3),
        ]
        + [PLAIN_SESSION] * 10
    )
    kinds = same(make_database(tmp_path / "platform.db", sessions, []), 5, 8)
    assert kinds["frames"] == 40 // 8
    assert kinds["rows"] == 2  # the rest of 53 rows, from row 40, in chunks of 8


def test_odd_rows_after_the_type_sample_are_still_detected(tmp_path: Path) -> None:
    """The reader's usual types come from the first 1,000 rows; odd rows after them switch to rows."""
    plain = [PLAIN_SESSION] * 1200
    odd = [("s-2", "p-2", "g-2", "2026-08-03 00:01:14", 2**62, 7, "web", "GB"), ("s-3", 5, "g-1", 9, 1.5, "x", 1, 2)]
    kinds = same(make_database(tmp_path / "platform.db", plain + odd + plain[:10], []), 3, 500)
    assert kinds == Counter(frames=2, rows=1)  # 1,000 rows as frames; the batch with the odd rows on as rows
