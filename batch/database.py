"""Reading the platform database: any SQLAlchemy URL, rows streamed in chunks.

Rows come through server-side cursors (``yield_per``): PostgreSQL sends them a chunk at a time and
SQLite steps through them, so memory holds one chunk whatever the table's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from batch.errors import ConfigurationError, SourceError

_POSTGRES_NAMES: Final = frozenset({"postgres", "postgresql", "postgresql+psycopg2"})


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

    def __init__(self, url: str, *, chunk_size: int = 5000) -> None:
        self.url = database_url(url)
        self.chunk_size = chunk_size
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

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
