"""Engines for the platform database: embedded SQLite on a developer machine, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url

#: URL drivers that mean "PostgreSQL with whatever driver": we always use psycopg 3.
_POSTGRES_NAMES = frozenset({"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"})


def platform_url(url: str | URL) -> URL:
    """``url`` with the driver we use: ``postgresql://`` (and ``postgres://``) become psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_NAMES:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def shown_url(url: str | URL) -> str:
    """``url`` for messages and logs: the password hidden."""
    return platform_url(url).render_as_string(hide_password=True)


def create_platform_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for ``url``. For a SQLite file, its folder is created and foreign keys are enforced."""
    parsed = platform_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL: the lobby can read while a seed or an import writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
