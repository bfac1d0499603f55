"""Reading the platform database: any SQLAlchemy URL, rows streamed in chunks.

Rows come through server-side cursors (``yield_per``): PostgreSQL sends them a chunk at a time and
SQLite steps through them, so memory holds one chunk whatever the table's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Final

import adbc_driver_manager
import adbc_driver_sqlite.dbapi
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from batch.errors import ConfigurationError, SourceError

_POSTGRES_NAMES: Final = frozenset({"postgres", "postgresql", "postgresql+psycopg2"})
#: The Arrow reader's per-row type signature column: one letter of SQLite's ``typeof`` per column.
_TYPES: Final = "__batch_types"
#: Per Arrow column type, the ``typeof`` letters whose values it holds exactly as :mod:`sqlite3` gives them.
_FLOAT_INTEGERS: Final = float(2**53)
#: Rows whose types make the Arrow reader's usual types (see ``_arrow_batches``).
_SAMPLE: Final = 1000
_TYPE_NAMES: Final = {"i": "integer", "r": "real", "t": "text", "b": "blob", "n": "null"}
_EXACT_LETTERS: Final = {pl.Int64: "in", pl.Float64: "rn", pl.String: "tn", pl.Null: "n"}

#: A chunk of :meth:`RowSource.frames`: columns, or (column names, row tuples) where it read rows.
Chunk = pl.DataFrame | tuple[tuple[str, ...], list[Any]]


def database_url(url: str) -> URL:
    """``url`` parsed, with PostgreSQL URLs on psycopg 3 (the driver this package installs)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"BATCH_DATABASE_URL is not a database URL: {exc}") from None
    if parsed.drivername in _POSTGRES_NAMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class RowSource:
    """Runs the configured queries against one database and streams their rows."""

    def __init__(self, url: str, *, chunk_size: int = 5000, arrow: bool = True) -> None:
        self.url = database_url(url)
        self.chunk_size = chunk_size
        self.arrow = arrow
        try:
            self._engine: Engine = create_engine(self.url)
        except (NoSuchModuleError, ArgumentError, ImportError) as exc:
            raise ConfigurationError(f"BATCH_DATABASE_URL {self.shown_url}: {exc}") from None

    @property
    def shown_url(self) -> str:
        """The URL with its password hidden, for messages."""
        return self.url.render_as_string(hide_password=True)

    def rows(self, sql: str, *, what: str) -> Iterator[dict[str, Any]]:
        """The rows of ``sql``, lazily, as column name -> value (``what`` names the query in errors)."""
        try:
            with self._engine.connect() as connection:
                result = connection.execution_options(yield_per=self.chunk_size).execute(text(sql))
                # Plain rows zipped with the column names: half the cost of RowMapping -> dict per row.
                columns = tuple(result.keys())
                for partition in result.partitions():
                    for row in partition:
                        yield dict(zip(columns, row, strict=True))
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise SourceError(f"{what} query failed on {self.shown_url}: {detail[0] if detail else exc!r}") from exc

    def chunks(self, sql: str, *, what: str, size: int | None = None) -> Iterator[tuple[tuple[str, ...], list[Any]]]:
        """The rows of ``sql`` a chunk at a time: (column names, up to ``size`` (default ``chunk_size``)
        row tuples), the same values as :meth:`rows` gives."""
        size = size or self.chunk_size
        try:
            with self._engine.connect() as connection:
                result = connection.execution_options(yield_per=size).execute(text(sql))
                columns = tuple(result.keys())
                for partition in result.partitions(size):
                    yield columns, [tuple(row) for row in partition]
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise SourceError(f"{what} query failed on {self.shown_url}: {detail[0] if detail else exc!r}") from exc

    def frames(
        self, sql: str, *, what: str, size: int | None = None, floats: frozenset[str] = frozenset()
    ) -> Iterator[Chunk]:
        """The rows of ``sql`` in chunks of up to ``size``, in :meth:`chunks`' order and with its values.

        On a SQLite file the chunks are read as Arrow record batches (``adbc-driver-sqlite``) and come as
        polars DataFrames, without a Python object per value. Each row carries its values' SQLite types
        (``typeof``); a batch is used only where every value's Arrow type holds it exactly as
        :mod:`sqlite3` gives it (integer -> Int64, real -> Float64, text -> String, NULL). At the first
        batch that does not (mixed types in a column, blobs) or any error of the driver, the rest of the
        query, from that batch's first row on, is read through :meth:`chunks` (``LIMIT -1 OFFSET n``
        over the same query, so the query's order must be deterministic, as an ``ORDER BY`` on a key
        makes it). Other databases: :meth:`chunks`.

        ``floats`` names columns whose reader takes an integer as the float of it (a NUMERIC column holds
        2.0 as the integer 2): there a Float64 column may also hold integers below 2**53 in magnitude.
        """
        size = size or self.chunk_size
        columns = self._arrow_columns(sql)
        if columns is None:
            yield from self.chunks(sql, what=what, size=size)
            return
        read = 0
        for frame in self._arrow_batches(sql, *columns, size, floats):
            if frame is None:
                break
            read += frame.height
            yield frame
        else:
            return
        body = sql.strip().rstrip(";")
        yield from self.chunks(f"SELECT * FROM ({body}) LIMIT -1 OFFSET {read}", what=what, size=size)  # noqa: S608

    def _arrow_columns(self, sql: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The query's column names if the Arrow reader can read it (a SQLite file, distinct names), and
        per column the ``typeof`` letters of its first rows' values (NULL left out)."""
        if not self.arrow or self.url.get_backend_name() != "sqlite" or not self.url.database:
            return None
        if self.url.database == ":memory:" or self.url.query:
            return None
        body = sql.strip().rstrip(";")
        try:
            with self._engine.connect() as connection:
                names = tuple(connection.execute(text(f"SELECT * FROM ({body}) LIMIT 0")).keys())  # noqa: S608
                if not names or len(set(names)) != len(names) or _TYPES in names:
                    return None
                types = ", ".join(f"substr(typeof(q.{_quoted(name)}), 1, 1)" for name in names)
                sample = connection.execute(text(f"SELECT {types} FROM ({body}) AS q LIMIT {_SAMPLE}")).all()  # noqa: S608
        except SQLAlchemyError:
            return None  # the row reader reports the query's error
        if not sample:
            return names, ("",) * len(names)
        return names, tuple(_usual(column) for column in zip(*sample, strict=True))

    def _arrow_batches(
        self, sql: str, names: tuple[str, ...], usual: tuple[str, ...], size: int, floats: frozenset[str]
    ) -> Iterator[pl.DataFrame | None]:
        """Exact record batches as DataFrames; None once a batch is not exact (nothing after it).

        A row whose values all have their column's ``usual`` types (or NULL) gets a NULL signature (one
        test per value in SQLite, cheaper than building the letters); the others get their letters."""
        body = sql.strip().rstrip(";")
        quoted = [_quoted(name) for name in names]
        signature = " || ".join(f"substr(typeof(q.{name}), 1, 1)" for name in quoted)
        usual_rows = " AND ".join(
            f"typeof(q.{name}) IN ({', '.join(repr(_TYPE_NAMES[letter]) for letter in letters + 'n')})"
            for name, letters in zip(quoted, usual, strict=True)
        )
        check = f"CASE WHEN {usual_rows} THEN NULL ELSE {signature} END"
        wrapped = f"SELECT {', '.join(f'q.{name}' for name in quoted)}, {check} AS {_TYPES} FROM ({body}) AS q"  # noqa: S608
        assert self.url.database is not None
        try:
            connection = adbc_driver_sqlite.dbapi.connect(self.url.database)
        except adbc_driver_manager.Error:
            yield None
            return
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(size)})
            cursor.execute(wrapped)
            reader = cursor.fetch_record_batch()
            for batch in reader:
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                if not _exact(frame, names, usual, floats):
                    yield None
                    return
                yield frame.drop(_TYPES)
        except (adbc_driver_manager.Error, pa.ArrowException, OSError):  # e.g. a type the first batch did not have
            yield None
        finally:
            if cursor is not None:
                cursor.close()  # an open statement (a consumer that stopped early) keeps the connection open
            connection.close()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _usual(letters: Sequence[str]) -> str:
    """The usual ``typeof`` letters of a column's sample: its most common one ("ir" where both numbers are)."""
    counts = Counter(letter for letter in letters if letter != "n")
    if not counts:
        return ""
    if "i" in counts and "r" in counts:
        return "ir"
    return counts.most_common(1)[0][0]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _exact(frame: pl.DataFrame, names: tuple[str, ...], usual: tuple[str, ...], floats: frozenset[str]) -> bool:
    """Whether every value of the batch is in an Arrow column that holds it exactly (see ``_TYPES``;
    a NULL signature stands for the ``usual`` letters)."""
    exact = [_EXACT_LETTERS.get(frame[name].dtype.base_type()) for name in names]
    allowed = [
        "irn" if letters == "rn" and name in floats else letters for name, letters in zip(names, exact, strict=True)
    ]
    seen: list[set[str]] = [set() for _ in names]
    signatures = frame[_TYPES]
    if signatures.null_count():
        for kinds, column in zip(usual, seen, strict=True):
            column.update(kinds)
    for signature in signatures.drop_nulls().unique().to_list():
        if len(signature) != len(names):
            return False
        for letter, column in zip(signature, seen, strict=True):
            column.add(letter)
    for name, letters, column in zip(names, allowed, seen, strict=True):
        if letters is None or not column <= set(letters):
            return False
        if "i" in column and letters == "irn":  # integers converted to double by the driver: exact below 2**53
            largest = frame[name].abs().max()
            if largest is not None and (not isinstance(largest, float) or largest >= _FLOAT_INTEGERS):
                return False
    return True
