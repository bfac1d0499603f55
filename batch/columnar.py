"""The Interactions dataset a chunk of rows at a time, as columns (``BATCH_COLUMNAR``, on by default).

The same records as :class:`~batch.transform.InteractionTransform` row by row, in the same order, with
the same drops by reason: the stream's normalization runs through
:class:`clickstream.columnar.ColumnarNormalizer` (column operations where a row is plainly valid, the
row normalizer for the rest), then the same batch rules in the same order (no user: ``missing_user``;
a metadata value its field cannot hold: ``invalid_metadata``), each metadata value encoded by
:func:`~batch.transform.encode_value` once per distinct value. Lines are written by polars' CSV
writer, which quotes as :mod:`csv` does for these values (nulls for empty fields).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any, Final

import polars as pl

from batch.minimums import MAX_EXAMPLES, InteractionStats
from batch.queries import INTERACTION_FIELDS, DatasetField, InteractionSource
from batch.transform import INVALID_METADATA, MISSING_USER, FieldValueError, encode_value, raw_value
from clickstream.columnar import EVENT_TYPE, EVENT_VALUE, ITEM_ID, SENT_AT, USER_ID, ColumnarNormalizer
from clickstream.mapping import EventMapping

_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_TIMESTAMP, _VALUE = "_timestamp", "_value"


class ColumnarInteractions:
    """Chunks of interaction rows -> lines of the Interactions CSV; drops counted in :attr:`dropped`."""

    def __init__(self, mapping: EventMapping, metadata: Sequence[DatasetField] = (), *, memory: int = 200_000) -> None:
        self.mapping = mapping
        self.metadata = tuple(metadata)
        self.normalizer = ColumnarNormalizer(mapping, memory=memory)
        self.dropped: Counter[str] = Counter()
        self.slow_rows = 0
        self._known_items: pl.Series | None = None
        self._value_texts: dict[float, str] = {}

    @property
    def header(self) -> list[str]:
        return [*INTERACTION_FIELDS, *(spec.name for spec in self.metadata)]

    def write_chunk(  # noqa: PLR0917
        self,
        source: InteractionSource,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        first_position: int,
        text: IO[str],
        stats: InteractionStats,
    ) -> int:
        """Normalize, filter and write one chunk of ``source``'s rows (``first_position``: the first row's
        position in the source); returns the records written and counts them in ``stats``."""
        if not rows:
            return 0
        columns: dict[str, list[Any] | pl.Series] = {}
        for name, values in zip(names, zip(*rows, strict=True), strict=True):
            if set(map(type, values)) <= _PLAIN_TYPES:
                columns[name] = list(values)
            else:  # datetimes, dates, decimals: as the raw event carries them
                columns[name] = [raw_value(value) for value in values]
        return self._write_columns(source, columns, first_position, text, stats)

    def write_frame(
        self,
        source: InteractionSource,
        frame: pl.DataFrame,
        first_position: int,
        text: IO[str],
        stats: InteractionStats,
    ) -> int:
        """:meth:`write_chunk` for a chunk read as columns (String, Int64, Float64 or Null columns holding
        exactly the values the database gave, as :meth:`batch.database.RowSource.frames` ensures)."""
        if frame.height == 0:
            return 0
        columns: dict[str, list[Any] | pl.Series] = {name: frame[name] for name in frame.columns}
        return self._write_columns(source, columns, first_position, text, stats)

    def _write_columns(
        self,
        source: InteractionSource,
        columns: dict[str, list[Any] | pl.Series],
        first_position: int,
        text: IO[str],
        stats: InteractionStats,
    ) -> int:
        outcome = self.normalizer.normalize_chunk(source.event_type, columns, f"batch:{source.name}", first_position)
        self.dropped.update(outcome.dropped)
        self.slow_rows += outcome.slow_rows
        events = outcome.events
        no_user = events[USER_ID].is_null()
        missing = int(no_user.sum())
        if missing:
            self.dropped[MISSING_USER] += missing
            events = events.filter(~no_user)
        if events.height == 0:
            return 0
        metadata, invalid = self._metadata(events)
        bad = int(invalid.sum())
        if bad:
            self.dropped[INVALID_METADATA] += bad
            events = events.filter(~invalid)
            metadata = [values.filter(~invalid) for values in metadata]
            if events.height == 0:
                return 0
        events = events.with_columns(
            pl.col(SENT_AT).floor().cast(pl.Int64).alias(_TIMESTAMP),
            pl.Series(_VALUE, self._value_text(events[EVENT_VALUE].to_list()), dtype=pl.String),
        )
        lines = pl.DataFrame(
            [
                events[USER_ID],
                events[ITEM_ID],
                events[_TIMESTAMP].cast(pl.String),
                events[EVENT_TYPE],
                events[_VALUE],
                *(values.alias(spec.name) for spec, values in zip(self.metadata, metadata, strict=True)),
            ]
        ).with_columns(pl.all().replace("", None))
        if any(lines[name].str.contains("\r", literal=True).any() for name in lines.columns):
            # polars quotes a field with a bare carriage return; Python's csv (the row path) does not
            csv.writer(text, lineterminator="\n").writerows(lines.rows())
        else:
            text.write(lines.write_csv(include_header=False))
        self._count(events, stats)
        return events.height

    def _metadata(self, events: pl.DataFrame) -> tuple[list[pl.Series], pl.Series]:
        """Per metadata field its CSV text, and which rows have a value their field cannot hold."""
        invalid = pl.Series([False] * events.height, dtype=pl.Boolean)
        texts: list[pl.Series] = []
        for spec in self.metadata:
            values = events[spec.property_key] if spec.property_key in events.columns else None
            if values is None or values.null_count() == values.len():
                try:
                    texts.append(pl.Series([encode_value(spec, None)] * events.height, dtype=pl.String))
                except FieldValueError:
                    return texts, pl.Series([True] * events.height, dtype=pl.Boolean)
                continue
            if values.dtype == pl.String:
                distinct = values.unique().to_list()
                encoded: dict[Any, str] = {}
                refused: list[Any] = []
                for value in distinct:
                    try:
                        encoded[value] = encode_value(spec, value)
                    except FieldValueError:
                        refused.append(value)
                plain = values.replace_strict(
                    [v for v in encoded if v is not None],
                    [encoded[v] for v in encoded if v is not None],
                    default=None,
                    return_dtype=pl.String,
                )
                if None in encoded:
                    plain = pl.select(
                        pl.when(values.is_null()).then(pl.lit(encoded[None])).otherwise(plain)
                    ).to_series()
                texts.append(plain)
                if refused:
                    invalid = invalid | (values.is_in([v for v in refused if v is not None]).fill_null(False))
                    if None in refused:
                        invalid = invalid | values.is_null()
            else:  # numbers: one by one (a float's text must keep its sign and repr)
                column: list[str | None] = []
                flags: list[bool] = []
                for value in values.to_list():
                    try:
                        column.append(encode_value(spec, value))
                        flags.append(False)
                    except FieldValueError:
                        column.append(None)
                        flags.append(True)
                texts.append(pl.Series(column, dtype=pl.String))
                invalid = invalid | pl.Series(flags, dtype=pl.Boolean)
        return texts, invalid

    def _value_text(self, values: list[float | None]) -> list[str | None]:
        """``repr`` of each eventValue (as :meth:`~batch.transform.InteractionRecord.csv_values`)."""
        cache = self._value_texts
        texts: list[str | None] = []
        for value in values:
            if value is None:
                texts.append(None)
            elif value:  # 0.0 and -0.0 are equal keys with different texts: never cached
                text = cache.get(value)
                if text is None:
                    text = cache[value] = repr(value)
                texts.append(text)
            else:
                texts.append(repr(value))
        if len(cache) > 65_536:
            cache.clear()
        return texts

    def _count(self, events: pl.DataFrame, stats: InteractionStats) -> None:
        """What :meth:`InteractionStats.add` counts, for a whole chunk of written records."""
        if self._known_items is None:
            self._known_items = pl.Series(sorted(stats.known_items), dtype=pl.String)
        stats.interactions += events.height
        per_user = events.group_by(USER_ID, maintain_order=True).len()
        stats._per_user.update(dict(zip(per_user[USER_ID].to_list(), per_user["len"].to_list(), strict=True)))
        per_type = events.group_by(EVENT_TYPE, maintain_order=True).len()
        stats.event_types.update(dict(zip(per_type[EVENT_TYPE].to_list(), per_type["len"].to_list(), strict=True)))
        unknown = events[ITEM_ID].filter(~events[ITEM_ID].is_in(self._known_items.implode()))
        stats.unknown_item_interactions += unknown.len()
        for item in unknown.to_list():
            if len(stats.unknown_item_examples) >= MAX_EXAMPLES:
                break
            if item not in stats.unknown_item_examples:
                stats.unknown_item_examples.append(item)
        first, last = events[_TIMESTAMP].min(), events[_TIMESTAMP].max()
        assert isinstance(first, int) and isinstance(last, int)
        if stats.first_timestamp is None or first < stats.first_timestamp:
            stats.first_timestamp = first
        if stats.last_timestamp is None or last > stats.last_timestamp:
            stats.last_timestamp = last
