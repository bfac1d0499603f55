"""The columnar interactions path (``BATCH_COLUMNAR``) against the row path, its specification.

Generated database rows, valid and broken (missing, empty, padded, too long and non-ASCII ids; bad,
out-of-range and odd timestamps; wrong value types; non-finite stakes; repeated sessions and
favourites; camelCase and event_type columns), go through :class:`~batch.transform.InteractionTransform`
row by row and through :class:`~batch.columnar.ColumnarInteractions` in chunks: the CSV lines must be
the same, in the same order, and the drops by reason the same, with the same small eventId memory.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.columnar import ColumnarInteractions
from batch.minimums import InteractionStats
from batch.queries import DatasetQueries, InteractionSource
from batch.transform import InteractionTransform
from clickstream.columnar import _EventIdMemory
from clickstream.mapping import EventMapping

QUERIES = DatasetQueries.load()
MAPPING = EventMapping.default()
METADATA = QUERIES.interactions.metadata
SESSIONS_SOURCE, FAVORITES_SOURCE = QUERIES.interactions.sources

ids = st.one_of(
    st.sampled_from(["p-1", "p-2", "g-1", "g-2", "s-1", "s-2"]),
    st.sampled_from([None, "", " p-1 ", "p,1", 'p"1', "x" * 256, "x" * 257, "é-1", "p\x1f1", "0" * 32, "p\r1"]),
    st.text(max_size=6),
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-08-03 00:01:14.927000",
            "2026-08-03 00:01:14",
            "2026-08-03 00:01:14.927",
            "2026-08-03T00:01:14",
            "2026-02-30 00:00:00",
            "1999-12-31 23:59:59",
            "2999-01-01 00:00:00",
            "not a time",
            "1785715369",
            "",
        ]
    ),
    st.none(),
    st.integers(min_value=0, max_value=2_000_000_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)).map(lambda d: d.replace(tzinfo=UTC)),
    st.booleans(),
)
stakes = st.one_of(
    st.sampled_from([0.1, 0.25, 1, 0.0, -0.0, 2.5, Decimal("0.50"), "0.5", True]),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
)
texts = st.one_of(
    st.sampled_from(["ios", "android", "GB", "GBP", "a|b", "", " ios", "[1]", "x,y"]), st.none(), st.text(max_size=4)
)


@st.composite
def session_rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "session_id": draw(ids),
        "player_id": draw(ids),
        "game_id": draw(ids),
        "timestamp": draw(times),
        "stake": draw(stakes),
        "currency": draw(texts),
        "platform": draw(texts),
        "country": draw(st.one_of(texts, st.integers(0, 9))),
    }


@st.composite
def favorite_rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(st.one_of(ids, st.sampled_from(["favorite:p-1:g-1", "favorite:p-2:g-1"]))),
        "session_id": draw(ids),
        "player_id": draw(ids),
        "game_id": draw(ids),
        "timestamp": draw(times),
    }


def run_rows(
    sources: list[tuple[InteractionSource, list[dict[str, Any]]]], memory: int
) -> tuple[list[str], Counter[str]]:
    transform = InteractionTransform(MAPPING, METADATA, memory=memory)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for source, rows in sources:
        for position, row in enumerate(rows):
            record = transform.transform(row, source, position)
            if record is not None:
                writer.writerow(record.csv_values())
    return text.getvalue().splitlines(), transform.dropped


def run_columns(
    sources: list[tuple[InteractionSource, list[dict[str, Any]]]], memory: int, chunk: int, *, parallel: bool | None
) -> tuple[list[str], Counter[str]]:
    """The columnar path a chunk at a time (``parallel`` None: ``write_chunk``; else ``write_all``, with
    its read and prepare threads when True)."""
    columnar = ColumnarInteractions(MAPPING, METADATA, memory=memory)
    text = io.StringIO()
    stats = InteractionStats(known_items=frozenset({"g-1"}))
    for source, rows in sources:
        if not rows:
            continue
        names = list(rows[0])
        parts = [
            (tuple(names), [tuple(row[name] for name in names) for row in rows[start : start + chunk]])
            for start in range(0, len(rows), chunk)
        ]
        if parallel is None:
            for index, (_, part) in enumerate(parts):
                columnar.write_chunk(source, names, part, index * chunk, text, stats)
        else:
            columnar.write_all(source, iter(parts), text, stats, parallel=parallel)
    return text.getvalue().splitlines(), columnar.dropped


def same(sources: list[tuple[InteractionSource, list[dict[str, Any]]]], memory: int, chunk: int) -> None:
    lines, dropped = run_rows(sources, memory)
    for parallel in (None, False, True):
        columnar_lines, columnar_dropped = run_columns(sources, memory, chunk, parallel=parallel)
        assert columnar_lines == lines, parallel
        assert columnar_dropped == dropped, parallel


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sessions=st.lists(session_rows(), max_size=40),
    favorites=st.lists(favorite_rows(), max_size=15),
    memory=st.integers(1, 8),
    chunk=st.integers(1, 17),
)
def test_columnar_path_equals_row_path(
    sessions: list[dict[str, Any]], favorites: list[dict[str, Any]], memory: int, chunk: int
) -> None:
    same([(SESSIONS_SOURCE, sessions), (FAVORITES_SOURCE, favorites)], memory, chunk)


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(
        st.fixed_dictionaries(
            {
                "session_id": st.sampled_from(["s-1", "s-2", "s-3"]),
                "player_id": st.sampled_from(["p-1", "p-2", None]),
                "game_id": st.sampled_from(["g-1", "g-2"]),
                "timestamp": st.sampled_from(["2026-08-03 00:01:14.927000", "2026-08-04 10:00:00"]),
                "stake": st.sampled_from([0.1, 0.5, 2.0]),
                "currency": st.just("GBP"),
                "platform": st.sampled_from(["ios", "web"]),
                "country": st.sampled_from(["GB", None]),
            }
        ),
        max_size=60,
    ),
    memory=st.integers(1, 5),
    chunk=st.integers(1, 25),
)
def test_plain_rows_with_repeats_evicted_and_collapsed_alike(
    sessions: list[dict[str, Any]], memory: int, chunk: int
) -> None:
    """Valid rows only (the columnar path decides all of them): collapsing under a tiny memory."""
    same([(SESSIONS_SOURCE, sessions)], memory, chunk)


def test_camel_case_and_event_type_columns_take_the_row_normalizer() -> None:
    rows = [
        {
            "sessionId": "s-1",
            "player_id": "p-1",
            "game_id": "g-1",
            "timestamp": "2026-08-03 00:01:14",
            "event_type": "favorite_added",
        },
        {
            "sessionId": "s-1",
            "player_id": "p-1",
            "game_id": "g-1",
            "timestamp": "2026-08-03 00:01:15",
            "event_type": "game_round",
        },
        {
            "sessionId": "s-1",
            "player_id": "p-1",
            "game_id": "g-1",
            "timestamp": "2026-08-03 00:01:16",
            "event_type": "game_round",
        },
    ]
    same([(SESSIONS_SOURCE, rows)], 10, 2)
    lines, dropped = run_columns([(SESSIONS_SOURCE, rows)], 10, 2, parallel=True)
    assert [line.split(",")[3] for line in lines] == ["favorite", "play"]
    assert dropped == Counter({"collapsed": 1})


def test_a_hex_event_id_equal_to_a_positional_id_is_a_duplicate() -> None:
    """A client eventId equal to the id the normalizer derives for a row without one: same event."""
    from clickstream.normalize import stable_id

    positional = stable_id("batch:favorites", "0", "0", "0")
    rows: list[dict[str, Any]] = [
        {
            "event_id": None,
            "session_id": "s-1",
            "player_id": "p-1",
            "game_id": "g-1",
            "timestamp": "2026-08-03 00:01:14",
        },
        {
            "event_id": positional,
            "session_id": "s-1",
            "player_id": "p-1",
            "game_id": "g-2",
            "timestamp": "2026-08-03 00:01:15",
        },
    ]
    same([(FAVORITES_SOURCE, rows)], 10, 1)
    same([(FAVORITES_SOURCE, rows)], 10, 2)
    assert run_columns([(FAVORITES_SOURCE, rows)], 10, 2, parallel=True)[1] == Counter({"duplicate": 1})


def reference_memory(capacity: int, keys: list[str]) -> list[bool]:
    """``_BoundedSet.add``'s answers: an ordered dict, one key at a time."""
    known: OrderedDict[str, None] = OrderedDict()
    fresh: list[bool] = []
    for key in keys:
        if key in known:
            known.move_to_end(key)
            fresh.append(False)
        else:
            known[key] = None
            if len(known) > capacity:
                known.popitem(last=False)
            fresh.append(True)
    return fresh


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.text(max_size=3)), max_size=80),
    capacity=st.integers(1, 12),
    cuts=st.lists(st.integers(0, 80), max_size=6),
)
def test_event_id_memory_answers_as_the_bounded_set(keys: list[str], capacity: int, cuts: list[int]) -> None:
    """The memory appends chunks of new keys as columns and takes the others one by one: the same
    answers as the row normalizer's least-recently-seen set, however the keys are cut into chunks."""
    memory = _EventIdMemory(capacity)
    bounds = [0, *sorted(cut for cut in cuts if cut < len(keys)), len(keys)]
    answers: list[bool] = []
    for start, end in itertools.pairwise(bounds):
        answers.extend(memory.add_all(keys[start:end]))
        assert len(memory) <= capacity
    assert answers == reference_memory(capacity, keys)
    assert len(memory) == min(capacity, len(set(keys)))


def test_event_id_memory_forgets_the_least_recently_seen_across_chunks() -> None:
    memory = _EventIdMemory(3)
    assert memory.add_all(["a", "b", "c"]) == [True, True, True]
    assert memory.add_all(["a"]) == [False]  # a is now the most recent: b is the oldest
    assert memory.add_all(["d", "e"]) == [True, True]  # b and c forgotten
    assert memory.add_all(["b", "c"]) == [True, True]  # a and d forgotten
    assert memory.add_all(["e", "b", "a"]) == [False, False, True]
