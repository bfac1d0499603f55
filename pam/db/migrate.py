"""Schema migrations (Alembic), configured from the package itself: no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine

from pam.db.engine import platform_url

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")


def alembic_config(url: str | URL) -> Config:
    """An Alembic configuration for the database at ``url`` and the migrations of this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # The URL goes in as an object: an .ini value would be %-interpolated and a str() of a URL hides
    # its password.
    config.attributes["database_url"] = platform_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (the newest by default)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at ``url`` back to ``revision`` (``base`` drops every table)."""
    command.downgrade(alembic_config(url), revision)


def new_revision(url: str | URL, message: str, *, autogenerate: bool = True) -> None:
    """Write a new revision file, by default with the differences between the models and the database."""
    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


def head_revision() -> str | None:
    """The newest revision the package ships."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for a database never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
