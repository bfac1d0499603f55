"""Alembic's environment for the platform database.

Run by ``pam.db.migrate`` (``pam db upgrade``), which hands over either an open connection
(``config.attributes["connection"]``) or a URL (``config.attributes["database_url"]``); no alembic.ini
is involved. Offline mode (``--sql``) renders the SQL for the URL's dialect.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from pam.db.engine import create_platform_engine, platform_url
from pam.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters tables by copying them: later revisions can change columns there too.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(
        url=platform_url(config.attributes["database_url"]),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_platform_engine(config.attributes["database_url"])
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
