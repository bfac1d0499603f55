"""The stream's normalization compiled to column operations, for chunks of similar raw events.

:func:`clickstream.normalize.normalize` and :class:`~clickstream.normalize.Normalizer` stay the
specification. :class:`ColumnarNormalizer` takes a chunk of raw events of one raw type as columns (one
list of values per raw field, ``None`` for an absent field, as a database row gives them) and decides,
with vectorized checks, which rows are *plainly* valid: every value of a type pydantic takes as it is,
text printable ASCII with nothing to strip, ids within their limits, timestamps in the strict
``YYYY-MM-DD HH:MM:SS[.fff[fff]]`` shape or numbers, inside the accepted range and not near "now",
properties surely under their length limit. For those rows the outcome is computed over whole columns;
every other row goes through :func:`~clickstream.normalize.normalize` itself, one by one, inside the
chunk. Collapsing and duplicate suppression then run over the chunk's rows in order, with the same
bounded, least-recently-seen memory of eventIds as :class:`~clickstream.normalize.Normalizer`, so the
events and the drops by reason are the row normalizer's, row for row
(``tests/unit/test_columnar_equivalence.py`` checks it on generated rows, valid and broken).

EventIds are not hashed on the common path: equal eventIds are equal hash inputs (the collapse id's
and the positional id's parts joined by ``\\x1f``), so the memory holds those inputs instead. A
client-given eventId can only equal a hash if it is 32 hex characters, and an input if it contains
``\\x1f``: on the first such id the memory switches to real eventIds (hashing its keys) for the rest
of the run, and the outcome stays exact.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
from pydantic.alias_generators import to_camel

from clickstream.limits import MAX_ID_LENGTH, MAX_PROPERTIES_LENGTH, MAX_RECOMMENDATION_ID_LENGTH
from clickstream.mapping import EventMapping, Interaction
from clickstream.normalize import (
    EARLIEST_TIMESTAMP,
    MAX_CLOCK_SKEW_SECONDS,
    Source,
    collapsed_event_id,
    normalize,
    stable_id,
)
from clickstream.outcomes import Drop, DropReason
from clickstream.raw import RawEvent

TEXT_FIELDS: Final = frozenset(
    {
        "event_id",
        "player_id",
        "session_id",
        "game_id",
        "platform",
        "country",
        "currency",
        "lobby_section",
        "recommendation_id",
    }
)
FLOAT_FIELDS: Final = frozenset({"stake", "win"})
INT_FIELDS: Final = frozenset({"duration_ms", "position"})
#: Fields the columnar path reads an integer (below 2**53) and the float of it alike.
NUMBER_FIELDS: Final = FLOAT_FIELDS | {"timestamp"}
#: Fields a columnar chunk may carry; any other raw field (impression, a camelCase spelling, event_type)
#: makes :meth:`ColumnarNormalizer.supports` say no, and the caller uses the row normalizer.
COLUMNAR_FIELDS: Final = TEXT_FIELDS | FLOAT_FIELDS | INT_FIELDS | {"timestamp"}
_ALL_SPELLINGS: Final = frozenset(RawEvent.model_fields) | frozenset(to_camel(name) for name in RawEvent.model_fields)

#: Printable ASCII with no space at either end: what pydantic keeps exactly as it is (no strip, no
#: surrogate, not empty).
_PLAIN_TEXT: Final = r"^[!-~](?:[ -~]*[!-~])?$"
#: The ISO-8601 shape the columnar path reads (database text of a naive UTC time); others: row path.
_PLAIN_TIME: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6})?$"
_HEX_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_INT_LIMIT: Final = 2**53
#: Rows dated this close to the upper bound (now + the clock skew allowance) go to the row path, so
#: that the moving "now" cannot make the two paths disagree.
_NOW_MARGIN_SECONDS: Final = 3600.0
#: Upper bound of one number's JSON text (a float's repr, an int below 2**53).
_MAX_NUMBER_JSON: Final = 24
_MILLIS_THRESHOLD: Final = 100_000_000_000
_SEP: Final = "\x1f"

#: Columns of :attr:`ChunkOutcome.events`.
ROW, USER_ID, ITEM_ID, SENT_AT, EVENT_VALUE, EVENT_TYPE = (
    "row",
    "user_id",
    "item_id",
    "sent_at",
    "event_value",
    "event_type",
)
COLLAPSE: Final = "_collapse"


@dataclass(slots=True)
class ChunkOutcome:
    """The events of one chunk (row order; ``row`` is the index in the chunk) and its drops by reason.

    ``events`` has the columns ``row``, ``user_id``, ``item_id``, ``sent_at``, ``event_value``,
    ``event_type`` and one per property key any rule sends (camelCase, values as the event's
    ``properties`` JSON decodes them; null when the event's rule does not send it or it has no value).
    """

    events: pl.DataFrame
    dropped: Counter[str] = field(default_factory=Counter)
    slow_rows: int = 0
    #: Of a prepared chunk (:meth:`ColumnarNormalizer.prepare_chunk`): its keys are real eventIds.
    hashed: bool = False


def repeated_drops(events: pl.DataFrame, fresh: pl.Series) -> Counter[str]:
    """The drops of the events whose keys were not ``fresh``: collapsed, or duplicates."""
    dropped: Counter[str] = Counter()
    repeated = events.filter(~fresh)
    collapsed = int(repeated[COLLAPSE].sum())
    if collapsed:
        dropped[DropReason.COLLAPSED.value] += collapsed
    if repeated.height - collapsed:
        dropped[DropReason.DUPLICATE.value] += repeated.height - collapsed
    return dropped


class _EventIdMemory:
    """:class:`~clickstream.normalize.Normalizer`'s bounded least-recently-seen set, over hash inputs
    until a client eventId could collide with a hash (then over real eventIds).

    Held as columns, oldest first: the keys and their 64-bit polars hashes. A chunk whose keys are
    distinct and none of whose hashes is remembered (the common case: every key new) is appended and the
    oldest keys beyond the capacity cut, without a Python object per key; any other chunk (a hash seen
    before: a repeated key, or a collision) goes through the exact one-key-at-a-time update of an
    ordered dict, as ``_BoundedSet.add`` does it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.hashed = False
        self._keys = pl.Series("key", [], dtype=pl.String)
        self._hashes = self._keys.hash()

    def switch_to_hashes(self) -> None:
        if self.hashed:
            return
        self.hashed = True
        keys = [stable_id(*key.split(_SEP)) if _SEP in key else key for key in self._keys.to_list()]
        self._set(list(dict.fromkeys(keys)))

    def _set(self, keys: list[str]) -> None:
        self._keys = pl.Series("key", keys, dtype=pl.String)
        self._hashes = self._keys.hash()

    def add_all(self, keys: Sequence[str] | pl.Series) -> list[bool]:
        """Remember ``keys`` in order; per key, True if it was new (what ``_BoundedSet.add`` says)."""
        series = keys if isinstance(keys, pl.Series) else pl.Series("key", list(keys), dtype=pl.String)
        fresh = self.add_series(series)
        return [True] * series.len() if fresh is None else fresh.to_list()

    def add_series(self, keys: pl.Series) -> pl.Series | None:
        """:meth:`add_all` for a String Series; None when every key was new."""
        if keys.len() == 0:
            return None
        hashes = keys.hash()
        if hashes.n_unique() == hashes.len() and not hashes.is_in(self._hashes.implode()).any():
            self._keys = pl.concat([self._keys, keys.alias("key")]).tail(self.capacity).rechunk()
            self._hashes = pl.concat([self._hashes, hashes]).tail(self.capacity).rechunk()
            return None
        known: OrderedDict[str, None] = OrderedDict.fromkeys(self._keys.to_list())
        fresh: list[bool] = []
        for key in keys.to_list():
            if key in known:
                known.move_to_end(key)
                fresh.append(False)
            else:
                known[key] = None
                if len(known) > self.capacity:
                    known.popitem(last=False)
                fresh.append(True)
        self._set(list(known))
        return pl.Series(fresh, dtype=pl.Boolean)

    def __len__(self) -> int:
        return self._keys.len()


def _types(values: Sequence[Any]) -> set[type]:
    return set(map(type, values))


class ColumnarNormalizer:
    """Chunks of raw events of one raw type -> :class:`ChunkOutcome`, exactly as a
    :class:`~clickstream.normalize.Normalizer` fed the same events one by one (same memory size)."""

    def __init__(self, mapping: EventMapping, *, memory: int = 200_000) -> None:
        self.mapping = mapping
        self._memory = _EventIdMemory(memory)
        #: Whether keys are real eventIds (the key mode of :meth:`prepare_chunk`; the memory follows it in
        #: :meth:`decide`, so that the two stages may run in different threads, the first ahead).
        self._hashed = False
        #: Every property any rule sends: an event carries those of its own rule, the rest are null.
        self._property_fields = sorted({name for rule in mapping.interactions.values() for name in rule.properties})
        self._property_keys = [to_camel(name) for name in self._property_fields]

    @staticmethod
    def supports(columns: Sequence[str]) -> bool:
        """Whether chunks with these raw fields can take the columnar path (else: the row path)."""
        for column in columns:
            if column in _ALL_SPELLINGS and column not in COLUMNAR_FIELDS:
                return False
            if column in COLUMNAR_FIELDS and to_camel(column) != column and to_camel(column) in columns:
                return False
        return len(set(columns)) == len(columns)

    @property
    def remembered(self) -> int:
        return len(self._memory)

    def normalize_chunk(
        self, raw_type: str, columns: dict[str, list[Any] | pl.Series], stream_id: str, first_sequence: int
    ) -> ChunkOutcome:
        """Normalize one chunk: row ``i`` is the raw event ``{"event_type": raw_type, column: value...}``
        (None values left out) from ``Source(stream_id, str(first_sequence + i))``. A column may be a
        polars Series of type String, Int64, Float64 or Null, standing for the same values as a list.

        The same as :meth:`decide` of :meth:`prepare_chunk`."""
        return self.decide(self.prepare_chunk(raw_type, columns, stream_id, first_sequence))

    def prepare_chunk(
        self, raw_type: str, columns: dict[str, list[Any] | pl.Series], stream_id: str, first_sequence: int
    ) -> ChunkOutcome:
        """The part of :meth:`normalize_chunk` that does not depend on the eventId memory: the chunk's
        events before collapsing and duplicates, with their memory keys (columns ``key`` and
        ``_collapse``; :attr:`ChunkOutcome.hashed`: whether the keys are real eventIds). Chunks must be
        prepared in order (the key mode follows the ids seen); :meth:`decide` them in the same order, in
        this thread or another one."""
        rule = self.mapping.interactions[raw_type]
        size = len(next(iter(columns.values()))) if columns else 0
        frame, fast = self._fast_rows(rule, columns, size)
        outcome = ChunkOutcome(events=pl.DataFrame())
        slow_rows = [i for i, ok in enumerate(fast) if not ok] if fast is not None else list(range(size))
        outcome.slow_rows = len(slow_rows)
        # The row normalizer's events, then their memory keys (once the memory's mode is settled).
        made: list[tuple[int, str, str, str | None, str, float, float | None, dict[str, Any], str, bool]] = []
        # The slow rows' values as Python objects (a Series column gives only those rows, not the chunk).
        slow_values = {
            name: values.gather(slow_rows).to_list()
            if isinstance(values, pl.Series)
            else [values[i] for i in slow_rows]
            for name, values in columns.items()
        }
        for k, i in enumerate(slow_rows):
            data: dict[str, Any] = {"event_type": raw_type}
            for name, values in slow_values.items():
                if values[k] is not None:
                    data[name] = values[k]
            sequence = str(first_sequence + i)
            result = normalize(data, Source(stream_id=stream_id, sequence_number=sequence), self.mapping)
            if isinstance(result, Drop):
                outcome.dropped[result.reason.value] += 1
                continue
            assert result.item_id is not None  # normalize drops an interaction without a game_id
            properties = json.loads(result.properties) if result.properties else {}
            row_rule = self.mapping.interactions[str(data["event_type"]).strip()]
            key = self._slow_key(row_rule, result.event_id, result.session_id, result.item_id, stream_id, sequence)
            made.append(
                (
                    i,
                    key,
                    result.event_id,
                    result.user_id,
                    result.item_id,
                    result.sent_at,
                    result.event_value,
                    properties,
                    result.event_type,
                    row_rule.collapse,
                )
            )
        slow = [(row[0], row[2] if self._hashed else row[1], *row[3:]) for row in made]
        fast_frame = self._fast_events(rule, frame, stream_id, first_sequence) if frame is not None else None
        parts: list[pl.DataFrame] = []
        schema = self._schema()
        if fast_frame is not None and fast_frame.height:
            if self._hashed:
                fast_frame = fast_frame.with_columns(pl.col("key").map_elements(_hash_key, return_dtype=pl.String))
            parts.append(fast_frame.select(list(schema)))
        if slow:
            parts.append(
                pl.DataFrame(
                    {
                        ROW: [row[0] for row in slow],
                        "key": [row[1] for row in slow],
                        USER_ID: [row[2] for row in slow],
                        ITEM_ID: [row[3] for row in slow],
                        SENT_AT: [float(row[4]) for row in slow],
                        EVENT_VALUE: [row[5] for row in slow],
                        EVENT_TYPE: [row[7] for row in slow],
                        COLLAPSE: [row[8] for row in slow],
                        **{key: [row[6].get(key) for row in slow] for key in self._property_keys},
                    },
                    schema=schema,
                )
            )
        events = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
        if slow and len(parts) > 1:
            events = events.sort(ROW)
        outcome.events = events
        outcome.hashed = self._hashed
        return outcome

    def decide(self, prepared: ChunkOutcome) -> ChunkOutcome:
        """Collapsing and duplicates of a :meth:`prepare_chunk` outcome, through the eventId memory."""
        fresh = self.fresh(prepared)
        return self.keep(prepared, fresh)

    def fresh(self, prepared: ChunkOutcome) -> pl.Series | None:
        """Per event of a prepared chunk, whether the memory had not seen its key (None: all new)."""
        if prepared.hashed:
            self._memory.switch_to_hashes()
        return self._memory.add_series(prepared.events["key"])

    @staticmethod
    def keep(prepared: ChunkOutcome, fresh: pl.Series | None) -> ChunkOutcome:
        """The prepared chunk's outcome with only its ``fresh`` events, the others counted as drops."""
        outcome = ChunkOutcome(events=prepared.events, dropped=Counter(prepared.dropped), slow_rows=prepared.slow_rows)
        events = prepared.events
        if fresh is not None and not fresh.all():
            outcome.dropped.update(repeated_drops(events, fresh))
            events = events.filter(fresh)
        outcome.events = events.drop("key", COLLAPSE)
        return outcome

    # --- the columnar checks ------------------------------------------------------------------------

    def _schema(self) -> dict[str, pl.DataType]:
        schema: dict[str, pl.DataType] = {
            ROW: pl.Int64(),
            "key": pl.String(),
            USER_ID: pl.String(),
            ITEM_ID: pl.String(),
            SENT_AT: pl.Float64(),
            EVENT_VALUE: pl.Float64(),
            EVENT_TYPE: pl.String(),
            COLLAPSE: pl.Boolean(),
        }
        for name in self._property_fields:
            schema[to_camel(name)] = (
                pl.String() if name in TEXT_FIELDS else pl.Float64() if name in FLOAT_FIELDS else pl.Int64()
            )
        return schema

    def _fast_rows(
        self, rule: Interaction, columns: dict[str, list[Any] | pl.Series], size: int
    ) -> tuple[pl.DataFrame | None, list[bool] | None]:
        """The chunk as typed columns and, per row, whether the columnar path decides it (None: no row)."""
        if size == 0 or not self.supports(list(columns)):
            return None, None
        series: dict[str, pl.Series] = {}
        for name, values in columns.items():
            if name not in COLUMNAR_FIELDS:
                continue  # ignored by the raw event model
            if isinstance(values, pl.Series):
                typed = _typed_series(name, values)
                if typed is None:
                    return None, None
                series[name] = typed
                continue
            kinds = _types(values) - {type(None)}
            try:
                if name == "timestamp":
                    if kinds <= {str}:
                        series[name] = pl.Series(name, values, dtype=pl.String)
                    elif kinds <= {int, float}:
                        series[name] = pl.Series(name, values, dtype=pl.Float64, strict=False)
                        if int in kinds and any(type(v) is int and not -_INT_LIMIT < v < _INT_LIMIT for v in values):
                            return None, None
                    else:
                        return None, None
                elif name in TEXT_FIELDS:
                    if not kinds <= {str}:
                        return None, None
                    series[name] = pl.Series(name, values, dtype=pl.String)
                elif name in FLOAT_FIELDS:
                    if not kinds <= {int, float}:
                        return None, None
                    if int in kinds and any(type(v) is int and not -_INT_LIMIT < v < _INT_LIMIT for v in values):
                        return None, None
                    series[name] = pl.Series(name, values, dtype=pl.Float64, strict=False)
                else:
                    if not kinds <= {int} or any(v is not None and not -_INT_LIMIT < v < _INT_LIMIT for v in values):
                        return None, None
                    series[name] = pl.Series(name, values, dtype=pl.Int64)
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
                return None, None
        frame = pl.DataFrame(list(series.values())) if series else pl.DataFrame({"_": [None] * size})
        checks: list[pl.Expr] = [pl.lit(True)]
        for name in series:
            column = pl.col(name)
            if name in TEXT_FIELDS:
                limit = {"recommendation_id": MAX_RECOMMENDATION_ID_LENGTH}.get(
                    name, MAX_ID_LENGTH if name in ("event_id", "player_id", "session_id", "game_id") else None
                )
                check = column.str.contains(_PLAIN_TEXT)
                if limit is not None:
                    check = check & (column.str.len_chars() <= limit)
                checks.append(column.is_null() | check)
            elif name in FLOAT_FIELDS:
                checks.append(column.is_null() | column.is_finite())
        for required in ("session_id", "game_id", "timestamp"):
            checks.append(pl.col(required).is_not_null() if required in series else pl.lit(False))
        seconds = self._seconds(series)
        latest = time.time() + MAX_CLOCK_SKEW_SECONDS - _NOW_MARGIN_SECONDS
        if seconds is not None:
            frame = frame.with_columns(seconds.alias(SENT_AT))
            checks.append(pl.col(SENT_AT).is_not_null())
            checks.append((pl.col(SENT_AT) >= EARLIEST_TIMESTAMP) & (pl.col(SENT_AT) <= latest))
        else:
            checks.append(pl.lit(False))
        # An upper bound of the properties' JSON length (an escaped character is at most 6).
        bound: pl.Expr = pl.lit(2)
        for name in rule.properties:
            if name not in series:
                continue
            size_of_value = pl.col(name).str.len_bytes() * 2 + 2 if name in TEXT_FIELDS else pl.lit(_MAX_NUMBER_JSON)
            bound = bound + pl.when(pl.col(name).is_null()).then(0).otherwise(len(name) + 4 + size_of_value)
        checks.append(bound <= MAX_PROPERTIES_LENGTH)
        if "event_id" in series and not rule.collapse and series["event_id"].str.contains(_HEX_ID.pattern).any():
            # A client eventId that could equal a hash: the memory must hold real eventIds from now on.
            self._hashed = True
        fast_expr = checks[0]
        for check in checks[1:]:
            fast_expr = fast_expr & check
        frame = frame.with_columns(fast_expr.fill_null(False).alias("_fast"), pl.int_range(pl.len()).alias(ROW))
        return frame, frame["_fast"].to_list()

    @staticmethod
    def _seconds(series: dict[str, pl.Series]) -> pl.Expr | None:
        """Epoch seconds of the timestamp column as :func:`~clickstream.raw.parse_timestamp` reads it
        (null where the columnar path does not read it)."""
        stamp = series.get("timestamp")
        if stamp is None:
            return None
        column = pl.col("timestamp")
        if stamp.dtype == pl.String:
            parsed = (
                pl.when(column.str.contains(_PLAIN_TIME))
                .then(column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False))
                .otherwise(None)
            )
            return parsed.dt.epoch("us").cast(pl.Float64) / 1_000_000.0
        number = column.cast(pl.Float64)
        return pl.when(number.abs() >= _MILLIS_THRESHOLD).then(number / 1000.0).otherwise(number)

    def _fast_events(self, rule: Interaction, frame: pl.DataFrame, stream_id: str, first_sequence: int) -> pl.DataFrame:
        fast = frame.filter(pl.col("_fast"))
        names = set(fast.columns)
        if rule.collapse:
            key = pl.concat_str(
                [pl.lit("collapsed"), pl.col("session_id"), pl.col("game_id"), pl.lit(rule.event_type)],
                separator=_SEP,
            )
        else:
            positional = pl.concat_str(
                [pl.lit(stream_id), (pl.col(ROW) + first_sequence).cast(pl.String), pl.lit("0"), pl.lit("0")],
                separator=_SEP,
            )
            key = pl.coalesce(pl.col("event_id"), positional) if "event_id" in names else positional
        value: pl.Expr = pl.lit(None, dtype=pl.Float64)
        if rule.value is not None and rule.value in names:
            value = pl.col(rule.value).cast(pl.Float64)
        columns: list[pl.Expr] = [
            pl.col(ROW),
            key.alias("key"),
            (pl.col("player_id") if "player_id" in names else pl.lit(None, dtype=pl.String)).alias(USER_ID),
            pl.col("game_id").alias(ITEM_ID),
            pl.col(SENT_AT),
            value.alias(EVENT_VALUE),
            pl.lit(rule.event_type, dtype=pl.String).alias(EVENT_TYPE),
            pl.lit(rule.collapse, dtype=pl.Boolean).alias(COLLAPSE),
        ]
        for name in self._property_fields:
            kind = pl.String if name in TEXT_FIELDS else pl.Float64 if name in FLOAT_FIELDS else pl.Int64
            sent = name in rule.properties and name in names
            columns.append((pl.col(name).cast(kind) if sent else pl.lit(None, dtype=kind)).alias(to_camel(name)))
        return fast.select(columns)

    def _slow_key(  # noqa: PLR0917
        self,
        rule: Interaction,
        event_id: str,
        session_id: str,
        item_id: str | None,
        stream_id: str,
        sequence: str,
    ) -> str:
        """The memory key of an event the row normalizer made (its eventId, or that id's hash input)."""
        if self._hashed:
            return event_id
        if rule.collapse:
            assert item_id is not None
            assert event_id == collapsed_event_id(session_id, item_id, rule.event_type)
            return _SEP.join(("collapsed", session_id, item_id, rule.event_type))
        if event_id == stable_id(stream_id, sequence, "0", "0"):
            return _SEP.join((stream_id, sequence, "0", "0"))
        if _SEP in event_id or _HEX_ID.match(event_id):
            self._hashed = True
        return event_id


def _typed_series(name: str, values: pl.Series) -> pl.Series | None:
    """A Series column as the list path would type it (None: the list path would send every row to the
    row normalizer, or the dtype is not one a database column maps to exactly)."""
    target = pl.String if name in TEXT_FIELDS else pl.Float64 if name in FLOAT_FIELDS else pl.Int64
    if values.null_count() == values.len() and values.dtype in (pl.Null, pl.String, pl.Int64, pl.Float64):
        return pl.Series(name, [None] * values.len(), dtype=pl.String if name == "timestamp" else target)
    if values.dtype == pl.String:
        return values.alias(name) if name in TEXT_FIELDS or name == "timestamp" else None
    if values.dtype == pl.Int64:
        if name in TEXT_FIELDS or not bool(((values > -_INT_LIMIT) & (values < _INT_LIMIT)).fill_null(True).all()):
            return None
        return values.alias(name) if name in INT_FIELDS else values.cast(pl.Float64).alias(name)
    if values.dtype == pl.Float64:
        return values.alias(name) if name in FLOAT_FIELDS or name == "timestamp" else None
    return None


def _hash_key(key: str) -> str:
    """The eventId of a memory key made on the columnar path (a hash input, or a client eventId)."""
    return stable_id(*key.split(_SEP)) if _SEP in key else key
