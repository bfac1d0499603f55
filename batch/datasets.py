"""``batch datasets``: the platform database -> Personalize datasets, schemas and the lobby's catalog.

The data's way: :mod:`.database` (rows, streamed) -> :mod:`.transform` (records, the stream's
normalization for interactions) -> CSV lines -> :mod:`.sinks` (S3 multipart uploads or a folder), with
:mod:`.minimums` counting along. Files, under the output prefix or folder:

- ``items.csv``, ``users.csv``, ``interactions.csv``: headers of schema field names, epoch seconds,
  categorical values joined by ``|``;
- ``items.schema.json``, ``users.schema.json``, ``interactions.schema.json``: their Avro schemas;
- ``games.json``: the catalog the lobby shows;
- ``manifest.json``, written last: counts, drops by reason, the minimums and whether training may start.

Every file is staged first (:meth:`~batch.sinks.DatasetSink.stage`) and published only when the checks
pass: the lobby catalog is not empty (an empty ``games.json`` would empty every lobby; no option
publishes one) and the datasets meet the training minimums (unless ``allow_small``). A run that is
refused, or fails before publishing, publishes nothing: the previous run's files stay as they were,
manifest included. When publishing, the previous manifest is deleted first and the new one written last,
so a manifest is there only beside a complete set of files: a publish that fails partway has replaced
some files but leaves no manifest, so ``batch personalize apply`` imports nothing new from it.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from batch.columnar import ColumnarInteractions
from batch.database import RowSource
from batch.errors import SinkError
from batch.minimums import UNKNOWN_ITEMS, Check, InteractionStats, MinimumsReport
from batch.queries import DatasetQueries, RecordQuery
from batch.schemas import interactions_schema, items_schema, users_schema
from batch.settings import load_settings
from batch.sinks import DatasetSink, OutputFile, text_stream
from batch.transform import InteractionTransform, RecordTransform, catalog_entry
from clickstream.columnar import NUMBER_FIELDS
from clickstream.mapping import EventMapping

ITEMS_CSV: Final = "items.csv"
USERS_CSV: Final = "users.csv"
INTERACTIONS_CSV: Final = "interactions.csv"
CATALOG_JSON: Final = "games.json"
MANIFEST_JSON: Final = "manifest.json"
CSV_TYPE: Final = "text/csv; charset=utf-8"
JSON_TYPE: Final = "application/json"

#: Rows per chunk of the columnar interactions path, at least (a chunk's column operations cost a few ms).
COLUMNAR_CHUNK: Final = 50_000
#: Called with (dataset, rows read so far, done).
ProgressCallback = Callable[[str, int, bool], None]


#: Invalid records named in the report and the manifest, at most.
SHOWN_INVALID: Final = 5


@dataclass(slots=True)
class DatasetCounts:
    """Rows read from the database and records written, for one dataset."""

    read: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    #: Items and users dropped as invalid: record id -> why (the first ones, see ``RecordTransform``).
    invalid: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "read": self.read,
            "written": self.written,
            "dropped": dict(self.dropped.most_common()),
        }
        if self.invalid:
            counts["invalid_examples"] = dict(list(self.invalid.items())[:SHOWN_INVALID])
        return counts

    def invalid_lines(self) -> list[str]:
        """``id: why`` of the first invalid records, and how many more there are."""
        shown = [f"{record}: {why}" for record, why in list(self.invalid.items())[:SHOWN_INVALID]]
        more = sum(count for reason, count in self.dropped.items() if reason.startswith("invalid ")) - len(shown)
        return [*shown, f"... and {more:,} more"] if more > 0 else shown


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason not to publish the datasets: which check failed, why, and what to do."""

    check: str
    message: str
    #: ``allow_small`` publishes anyway (a training minimum); False: nothing does (an empty catalog).
    overridable: bool
    #: Too little data (not wrong data): waiting for more, or ``allow_small``, is the remedy.
    small: bool = False


@dataclass(slots=True)
class DatasetsSummary:
    """What ``batch datasets`` read, wrote and found, and whether it published the files."""

    database: str
    #: Where the files are published (the output folder or ``s3://bucket/prefix/``).
    location: str = ""
    items: DatasetCounts = field(default_factory=DatasetCounts)
    users: DatasetCounts = field(default_factory=DatasetCounts)
    interactions: DatasetCounts = field(default_factory=DatasetCounts)
    catalog_games: int = 0
    files: list[OutputFile] = field(default_factory=list)
    stats: InteractionStats | None = None
    seconds: float = 0.0
    #: Every failed check (those ``allow_small`` accepted included).
    problems: list[Problem] = field(default_factory=list)
    published: bool = False

    @property
    def minimums(self) -> MinimumsReport:
        assert self.stats is not None, "the interactions have not been written yet"
        return self.stats.report()

    def check(self) -> list[Problem]:
        """The failed checks, the catalog's first."""
        problems: list[Problem] = []
        if self.catalog_games == 0:
            problems.append(
                Problem(
                    "lobby catalog",
                    "the lobby catalog would be empty: the catalog query returned no games, and an empty "
                    "games.json empties every lobby. Is the database (BATCH_DATABASE_URL, --database-url) the "
                    "platform's, with enabled games?",
                    overridable=False,
                )
            )
        problems.extend(
            Problem(check.name, self._advice(check), overridable=True, small=check.name != UNKNOWN_ITEMS)
            for check in self.minimums.checks
            if not check.ok
        )
        return problems

    def _advice(self, check: Check) -> str:
        """What a failed minimum means; interactions of unknown items name the invalid items behind them."""
        if check.name != UNKNOWN_ITEMS or self.stats is None or not self.items.invalid:
            return check.advice or f"{check.name}: {check.actual:,}"
        dropped = [item for item in self.stats.unknown_item_examples if item in self.items.invalid]
        if not dropped:  # the examples are not among the invalid items kept: say both
            return f"{check.advice}. Items dropped as invalid: {'; '.join(self.items.invalid_lines())}"
        named = "; ".join(f"{item} ({self.items.invalid[item]})" for item in dropped[:SHOWN_INVALID])
        return (
            f"{check.actual:,} interactions are of games dropped from items.csv as invalid: {named}. Fix those "
            "rows in the database, or the field in the queries file (BATCH_QUERIES_FILE): a field that may be "
            "empty needs `nullable: true`"
        )

    def blocking(self, allow_small: bool) -> list[Problem]:
        """The problems that keep the files from being published."""
        return [problem for problem in self.problems if not (allow_small and problem.overridable)]

    def to_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": self.database,
            "datasets": {
                "items": self.items.to_json(),
                "users": self.users.to_json(),
                "interactions": {
                    **self.interactions.to_json(),
                    "users": stats.users if stats else 0,
                    "users_with_two_or_more": stats.users_with_two if stats else 0,
                    "event_types": dict(stats.event_types.most_common()) if stats else {},
                    "first_timestamp": stats.first_timestamp if stats else None,
                    "last_timestamp": stats.last_timestamp if stats else None,
                },
            },
            "catalog_games": self.catalog_games,
            "files": {output.name: {"location": output.location, "bytes": output.size} for output in self.files},
            "minimums": self.minimums.to_json() if stats else None,
            "ready_for_training": self.minimums.ok if stats else False,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        def dropped(counts: DatasetCounts) -> str:
            if not counts.dropped:
                return ""
            return "; dropped " + ", ".join(f"{reason} {count:,}" for reason, count in counts.dropped.most_common())

        stats = self.stats
        lines = [
            f"database:         {self.database}",
            f"items:            {self.items.written:,} of {self.items.read:,} rows{dropped(self.items)}",
            *(f"  invalid:        {line}" for line in self.items.invalid_lines()),
            f"users:            {self.users.written:,} of {self.users.read:,} rows{dropped(self.users)}",
            *(f"  invalid:        {line}" for line in self.users.invalid_lines()),
            f"interactions:     {self.interactions.written:,} of {self.interactions.read:,} rows"
            f"{dropped(self.interactions)}",
        ]
        if stats is not None:
            types = ", ".join(f"{name} {count:,}" for name, count in stats.event_types.most_common()) or "-"
            lines.append(f"  event types:    {types}")
            lines.append(f"  users:          {stats.users:,} ({stats.users_with_two:,} with 2 or more)")
            lines.append(f"  time span:      {stats.span()}")
        lines.append(f"lobby catalog:    {self.catalog_games:,} games")
        lines.append("files:" if self.published else "files (not published):")
        lines.extend(f"  {output.location}  ({output.size:,} bytes)" for output in self.files)
        lines.append(f"took:             {self.seconds:.1f} s")
        return lines


class _Counted:
    """Counts rows as they stream by and reports progress every ``every`` rows."""

    def __init__(self, name: str, counts: DatasetCounts, progress: ProgressCallback | None, every: int) -> None:
        self._name = name
        self._counts = counts
        self._progress = progress
        self._every = max(1, every)

    def __call__(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for row in rows:
            self._counts.read += 1
            if self._progress is not None and self._counts.read % self._every == 0:
                self._progress(self._name, self._counts.read, False)
            yield row

    def done(self) -> None:
        if self._progress is not None:
            self._progress(self._name, self._counts.read, True)


class DatasetBuilder:
    """Writes every dataset file of one run. Build one per run; :meth:`run` returns the summary."""

    def __init__(
        self,
        source: RowSource,
        sink: DatasetSink,
        queries: DatasetQueries,
        mapping: EventMapping,
        *,
        dedup_memory: int = 200_000,
        progress: ProgressCallback | None = None,
        columnar: bool | None = None,
        arrow_reader: bool | None = None,
        parallel: bool | None = None,
        allow_small: bool = False,
    ) -> None:
        self.source = source
        self.sink = sink
        self.queries = queries
        self.mapping = mapping
        self.progress = progress
        #: Publish datasets below the training minimums (never an empty catalog).
        self.allow_small = allow_small
        self.interaction_transform = InteractionTransform(mapping, queries.interactions.metadata, memory=dedup_memory)
        #: Interactions as columns, a chunk at a time (None: BATCH_COLUMNAR decides, true by default).
        self.columnar = load_settings().columnar if columnar is None else columnar
        #: The columnar path reads Arrow batches where RowSource.frames can (None: BATCH_ARROW_READER, true).
        self.arrow_reader = load_settings().arrow_reader if arrow_reader is None else arrow_reader
        #: The columnar path reads and prepares chunks in two more threads (None: BATCH_PARALLEL, true).
        self.parallel = load_settings().parallel if parallel is None else parallel
        self.columnar_interactions = ColumnarInteractions(mapping, queries.interactions.metadata, memory=dedup_memory)
        self.summary = DatasetsSummary(database=source.shown_url, location=sink.location(""))

    def run(self) -> DatasetsSummary:
        """Write every file, staged; publish them (the manifest last) if the checks pass. Returns the
        summary (``published``, ``problems``); raises :class:`~batch.errors.BatchError` subclasses, having
        published nothing, or, when publishing itself fails, part of the files and no manifest."""
        started = time.monotonic()
        self.interaction_transform.check(self.queries.interactions.sources)
        self.sink.check()
        try:
            item_ids = self._records("items", self.queries.items, ITEMS_CSV, self.summary.items, keep_ids=True)
            self._records("users", self.queries.users, USERS_CSV, self.summary.users, keep_ids=False)
            self.summary.stats = self._interactions(item_ids)
            self._catalog()
            self._schemas()
            self.summary.problems = self.summary.check()
            if self.summary.blocking(self.allow_small):
                self.summary.seconds = time.monotonic() - started
                return self.summary
            self.sink.remove(MANIFEST_JSON)
            try:
                self.sink.publish()
                self.summary.published = True
                self.summary.seconds = time.monotonic() - started
                manifest = json.dumps(self.summary.to_json(), indent=2).encode("utf-8") + b"\n"
                self.summary.files.append(self.sink.write_bytes(MANIFEST_JSON, manifest, JSON_TYPE))
            except SinkError as exc:
                raise SinkError(
                    f"{exc}; published partway: some files may be replaced, but there is no manifest, so apply "
                    "imports nothing new until a run publishes completely"
                ) from exc
            return self.summary
        finally:
            self.sink.discard()  # what is still staged: all of it when refused or failed

    def _counter(self, name: str, counts: DatasetCounts) -> _Counted:
        return _Counted(name, counts, self.progress, self.source.chunk_size)

    def _records(
        self, name: str, query: RecordQuery, file_name: str, counts: DatasetCounts, *, keep_ids: bool
    ) -> frozenset[str]:
        transform = RecordTransform(query, what=name)
        counted = self._counter(name, counts)
        ids: set[str] = set()
        with self.sink.stage(file_name, CSV_TYPE) as output, text_stream(output) as text:
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(transform.header)
            for row in counted(self.source.rows(query.sql, what=name)):
                values = transform.transform(row)
                if values is None:
                    continue
                if keep_ids:
                    if values[0] in ids:
                        counts.dropped[f"duplicate {transform.header[0]}"] += 1
                        continue
                    ids.add(values[0])
                writer.writerow(values)
                counts.written += 1
        counted.done()
        counts.dropped.update(transform.dropped)
        counts.invalid.update(transform.rejected)
        self.summary.files.append(output)
        return frozenset(ids) if keep_ids else frozenset()

    def _interactions(self, item_ids: frozenset[str]) -> InteractionStats:
        if self.columnar:
            return self._interactions_columnar(item_ids)
        transform = self.interaction_transform
        counts = self.summary.interactions
        stats = InteractionStats(known_items=item_ids)
        counted = self._counter("interactions", counts)
        with self.sink.stage(INTERACTIONS_CSV, CSV_TYPE) as output, text_stream(output) as text:
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(transform.header)
            for source in self.queries.interactions.sources:
                for position, row in enumerate(
                    counted(self.source.rows(source.sql, what=f"interactions ({source.name})"))
                ):
                    record = transform.transform(row, source, position)
                    if record is None:
                        continue
                    writer.writerow(record.csv_values())
                    stats.add(record)
                    counts.written += 1
        counted.done()
        counts.dropped.update(transform.dropped)
        self.summary.files.append(output)
        return stats

    def _interactions_columnar(self, item_ids: frozenset[str]) -> InteractionStats:
        columnar = self.columnar_interactions
        counts = self.summary.interactions
        stats = InteractionStats(known_items=item_ids)
        every = max(1, self.source.chunk_size)

        def read(length: int) -> None:
            before, counts.read = counts.read, counts.read + length
            if self.progress is not None and counts.read // every != before // every:
                self.progress("interactions", counts.read, False)

        with self.sink.stage(INTERACTIONS_CSV, CSV_TYPE) as output, text_stream(output) as text:
            csv.writer(text, lineterminator="\n").writerow(columnar.header)
            for source in self.queries.interactions.sources:
                size, what = max(self.source.chunk_size, COLUMNAR_CHUNK), f"interactions ({source.name})"
                chunks = (
                    self.source.frames(source.sql, what=what, size=size, floats=NUMBER_FIELDS)
                    if self.arrow_reader
                    else self.source.chunks(source.sql, what=what, size=size)
                )
                counts.written += columnar.write_all(source, chunks, text, stats, parallel=self.parallel, read=read)
        if self.progress is not None:
            self.progress("interactions", counts.read, True)
        counts.dropped.update(columnar.dropped)
        self.summary.files.append(output)
        return stats

    def _catalog(self) -> None:
        query = self.queries.catalog
        head = {"version": 1, "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        with self.sink.stage(CATALOG_JSON, JSON_TYPE) as output, text_stream(output) as text:
            # Streamed: '{"version": 1, ..., "games": [' entries ']}'.
            text.write(json.dumps(head)[:-1] + ', "games": [')
            for count, row in enumerate(self.source.rows(query.sql, what="catalog")):
                text.write(("," if count else "") + "\n  " + json.dumps(catalog_entry(row, query.lists)))
                self.summary.catalog_games += 1
            text.write("\n]}\n")
        self.summary.files.append(output)

    def _schemas(self) -> None:
        schemas = {
            "items.schema.json": items_schema(self.queries.items.fields),
            "users.schema.json": users_schema(self.queries.users.fields),
            "interactions.schema.json": interactions_schema(self.queries.interactions.metadata),
        }
        for name, schema in schemas.items():
            body = json.dumps(schema, indent=2).encode("utf-8") + b"\n"
            self.summary.files.append(self.sink.stage_bytes(name, body, JSON_TYPE))
