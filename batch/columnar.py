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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

import polars as pl

from batch.database import Chunk
from batch.minimums import MAX_EXAMPLES, InteractionStats
from batch.pipeline import read_ahead
from batch.queries import INTERACTION_FIELDS, DatasetField, InteractionSource
from batch.transform import INVALID_METADATA, MISSING_USER, FieldValueError, encode_value, raw_value
from clickstream.columnar import (
    EVENT_TYPE,
    EVENT_VALUE,
    ITEM_ID,
    SENT_AT,
    USER_ID,
    ChunkOutcome,
    ColumnarNormalizer,
    repeated_drops,
)
from clickstream.mapping import EventMapping

_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_TIMESTAMP, _VALUE = "_timestamp", "_value"
#: Chunks a stage of :meth:`ColumnarInteractions.write_all` runs ahead of the next one, with ``parallel``.
READ_AHEAD: Final = 2


@dataclass(slots=True)
class PreparedChunk:
    """A chunk after :meth:`ColumnarInteractions.prepare`: its normalized events before the eventId
    memory's decisions and, per event, its CSV fields (``lines``), what :meth:`_count` reads
    (``counted``) and whether it has no user, a metadata value its field refuses, a carriage return."""

    rows: int
    outcome: ChunkOutcome | None = None
    lines: pl.DataFrame | None = None
    counted: pl.DataFrame | None = None
    no_user: pl.Series | None = None
    invalid: pl.Series | None = None
    carriage: pl.Series | None = None


def _positions(chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, int]]:
    """Each chunk with the position of its first row in the source."""
    position = 0
    for chunk in chunks:
        yield chunk, position
        position += chunk.height if isinstance(chunk, pl.DataFrame) else len(chunk[1])


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
        return self.finish(self.prepare(source, (tuple(names), list(rows)), first_position), text, stats)

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
        return self.finish(self.prepare(source, frame, first_position), text, stats)

    def write_all(
        self,
        source: InteractionSource,
        chunks: Iterable[Chunk],
        text: IO[str],
        stats: InteractionStats,
        *,
        parallel: bool = False,
        read: Callable[[int], None] | None = None,
    ) -> int:
        """Every chunk of ``source`` (rows, or frames of :meth:`~batch.database.RowSource.frames`), in
        order; returns the records written. ``read`` is called with the rows of each chunk once written.

        With ``parallel``, the chunks are read in one thread and prepared (:meth:`prepare`: everything
        but the eventId memory's decisions) in another, each ahead of the next stage by a bounded number
        of chunks, while this thread takes the decisions in the chunks' order and writes (:meth:`finish`):
        the same output, on up to three cores. An error of either thread is raised here."""
        positions = _positions(chunks)
        prepared: Iterator[PreparedChunk]
        if parallel:
            prepared = read_ahead(
                read_ahead(positions, depth=READ_AHEAD, name="batch-read"),
                depth=READ_AHEAD,
                prepare=lambda item: self.prepare(source, item[0], item[1]),
                name="batch-prepare",
            )
        else:
            prepared = (self.prepare(source, chunk, position) for chunk, position in positions)
        written = 0
        for chunk in prepared:
            written += self.finish(chunk, text, stats)
            if read is not None:
                read(chunk.rows)
        return written

    def prepare(self, source: InteractionSource, chunk: Chunk, first_position: int) -> PreparedChunk:
        """What does not depend on the eventId memory: the chunk's events before collapsing and duplicates
        and, for each, its CSV fields and whether the batch rules drop it. Chunks must be prepared in
        order; :meth:`finish` them in the same order (in this thread or another one)."""
        if isinstance(chunk, pl.DataFrame):
            size = chunk.height
            columns: dict[str, list[Any] | pl.Series] = {name: chunk[name] for name in chunk.columns}
        else:
            names, rows = chunk
            size = len(rows)
            columns = {}
            for name, values in zip(names, zip(*rows, strict=True), strict=True):
                if set(map(type, values)) <= _PLAIN_TYPES:
                    columns[name] = list(values)
                else:  # datetimes, dates, decimals: as the raw event carries them
                    columns[name] = [raw_value(value) for value in values]
        if size == 0:
            return PreparedChunk(rows=0)
        outcome = self.normalizer.prepare_chunk(source.event_type, columns, f"batch:{source.name}", first_position)
        events = outcome.events
        if events.height == 0:
            return PreparedChunk(rows=size, outcome=outcome)
        metadata, invalid = self._metadata(events)
        events = events.with_columns(
            pl.col(SENT_AT).floor().cast(pl.Int64).alias(_TIMESTAMP),
            self._value_text(events[EVENT_VALUE]),
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
        carriage = pl.any_horizontal([pl.col(name).str.contains("\r", literal=True) for name in lines.columns])
        return PreparedChunk(
            rows=size,
            outcome=outcome,
            lines=lines,
            counted=events.select(USER_ID, ITEM_ID, EVENT_TYPE, _TIMESTAMP),
            no_user=events[USER_ID].is_null(),
            invalid=invalid,
            carriage=lines.select(carriage.fill_null(False)).to_series(),
        )

    def finish(self, chunk: PreparedChunk, text: IO[str], stats: InteractionStats) -> int:
        """The eventId memory's decisions on a prepared chunk, the drops counted, its lines written and
        counted in ``stats``; returns the records written."""
        outcome = chunk.outcome
        if outcome is None:
            return 0
        self.slow_rows += outcome.slow_rows
        self.dropped.update(outcome.dropped)
        if outcome.events.height == 0:
            return 0
        fresh = self.normalizer.fresh(outcome)
        assert chunk.lines is not None and chunk.counted is not None
        assert chunk.no_user is not None and chunk.invalid is not None and chunk.carriage is not None
        keep = chunk.no_user.not_()
        if fresh is not None and not fresh.all():
            self.dropped.update(repeated_drops(outcome.events, fresh))
            keep = keep & fresh
            missing = int((chunk.no_user & fresh).sum())
        else:
            missing = int(chunk.no_user.sum())
        if missing:
            self.dropped[MISSING_USER] += missing
        bad = int((chunk.invalid & keep).sum())
        if bad:
            self.dropped[INVALID_METADATA] += bad
            keep = keep & chunk.invalid.not_()
        lines, counted = chunk.lines, chunk.counted
        if not keep.all():
            lines, counted = lines.filter(keep), counted.filter(keep)
        if lines.height == 0:
            return 0
        if (chunk.carriage & keep).any():
            # polars quotes a field with a bare carriage return; Python's csv (the row path) does not
            csv.writer(text, lineterminator="\n").writerows(lines.rows())
        else:
            text.write(lines.write_csv(include_header=False))
        self._count(counted, stats)
        return lines.height

    def _metadata(self, events: pl.DataFrame) -> tuple[list[pl.Series], pl.Series]:
        """Per metadata field its CSV text, and which rows have a value their field cannot hold."""
        invalid = pl.Series([False] * events.height, dtype=pl.Boolean)
        texts: list[pl.Series] = []
        for spec in self.metadata:
            values = events[spec.property_key] if spec.property_key in events.columns else None
            if values is None or values.null_count() == values.len():
                try:
                    texts.append(pl.Series([encode_value(spec, None)] * events.height, dtype=pl.String))
                except FieldValueError:  # every row dropped
                    texts.append(pl.Series([None] * events.height, dtype=pl.String))
                    invalid = pl.Series([True] * events.height, dtype=pl.Boolean)
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

    def _value_text(self, values: pl.Series) -> pl.Series:
        """``repr`` of each eventValue (as :meth:`~batch.transform.InteractionRecord.csv_values`): one
        ``repr`` per distinct value, mapped over the column (zeros by their sign; NaN: one by one)."""
        if values.dtype == pl.Null or values.null_count() == values.len():
            return pl.Series(_VALUE, [None] * values.len(), dtype=pl.String)
        values = values.cast(pl.Float64)
        if values.is_nan().any():
            return pl.Series(_VALUE, self._value_text_rows(values.to_list()), dtype=pl.String)
        cache = self._value_texts
        distinct = [value for value in values.unique().to_list() if value]  # no None, no zero
        texts: list[str] = []
        for value in distinct:
            text = cache.get(value)
            if text is None:
                text = cache[value] = repr(value)
            texts.append(text)
        if len(cache) > 65_536:
            cache.clear()
        mapped = pl.col(_VALUE).replace_strict(distinct, texts, default=None, return_dtype=pl.String)
        # 0.0 and -0.0 are one value for unique(): their texts come from the sign (1/-0.0 is -inf)
        zero = pl.when(1.0 / pl.col(_VALUE) < 0).then(pl.lit("-0.0")).otherwise(pl.lit("0.0"))
        return (
            values.alias(_VALUE)
            .to_frame()
            .select(pl.when(pl.col(_VALUE) == 0).then(zero).otherwise(mapped).alias(_VALUE))
            .to_series()
        )

    @staticmethod
    def _value_text_rows(values: list[float | None]) -> list[str | None]:
        return [None if value is None else repr(value) for value in values]

    def _count(self, events: pl.DataFrame, stats: InteractionStats) -> None:
        """What :meth:`InteractionStats.add` counts, for a whole chunk of written records."""
        if self._known_items is None:
            self._known_items = pl.Series(sorted(stats.known_items), dtype=pl.String)
        stats.interactions += events.height
        # Counter.update of an iterable counts in C (a mapping would be added key by key in Python)
        stats._per_user.update(events[USER_ID].to_list())
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
