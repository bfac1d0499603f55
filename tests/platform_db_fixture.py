"""pytest plugin: platform databases for the PAM and batch tests.

Register it with ``pytest_plugins = ["tests.platform_db_fixture"]``. Fixtures:

- ``postgres_server`` (session): a throwaway PostgreSQL cluster, ``initdb`` + ``pg_ctl`` in a temporary
  folder on a free port, stopped and deleted at the end. Run as root (CI), it runs the server as the
  ``postgres`` OS user (``initdb`` refuses root). ``TEST_POSTGRES_URL=postgresql://user:pass@host:port/db``
  uses a server you already run instead (its user must be allowed to create databases).
- ``postgres_database``: a new, empty database on that server for one test; yields its URL.
- ``seeded_sqlite`` / ``seeded_postgres`` (session): a database migrated and seeded with
  :data:`SEED_PLAN`, shared by the tests that only read it.

Nothing is skipped: without the PostgreSQL server binaries, the PostgreSQL tests fail and say what to
install (``bash .ci/install-postgres.sh``, or ``apt-get install -y postgresql``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from pam.db.engine import create_platform_engine
from pam.db.migrate import upgrade
from pam.db.seed import SeedPlan, SeedSummary, seed_database

#: Big enough for the training minimums (about 1,700 game sessions of about 200 players), small enough
#: to seed in a few seconds.
SEED_PLAN = SeedPlan(players=300, sessions=800, days=30, games=120, seed=7, end=date(2026, 11, 1))
POSTGRES_USER = "postgres"
INSTALL_HINT = (
    "install Debian's PostgreSQL server: `bash .ci/install-postgres.sh` "
    "(or `apt-get update && apt-get install -y postgresql`)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's newest ``/usr/lib/postgresql/*/bin``, else PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for initdb in candidates:
        if (initdb.parent / "pg_ctl").is_file():
            return initdb.parent
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    pytest.fail(f"the PostgreSQL server binaries (initdb, pg_ctl) are not installed: {INSTALL_HINT}", pytrace=False)


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str

    def url(self, database: str) -> str:
        return (
            make_url(self.admin_url)
            .set(drivername="postgresql+psycopg", database=database)
            .render_as_string(hide_password=False)
        )

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        plain = make_url(self.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(plain, autocommit=True, connect_timeout=5)

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def accepts_connections(self) -> bool:
        try:
            with self._connect() as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` as the postgres OS user when running as root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", POSTGRES_USER, "--", *command]


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        pytest.fail(
            f"{what} failed ({result.returncode}): {' '.join(command)}\n{result.stdout}\n{result.stderr}\n{server_log}",
            pytrace=False,
        )


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            pytest.fail(f"running as root needs the {POSTGRES_USER!r} OS user: {INSTALL_HINT}", pytrace=False)
        if shutil.which("runuser") is None:
            pytest.fail("running as root needs `runuser` (Debian package util-linux)", pytrace=False)
    # Under /tmp, not pytest's tmp_path: the postgres user must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    started = False
    try:
        _run(
            _as_postgres(
                [
                    *(str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER),
                    *("-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"),
                ]
            ),
            "initdb",
        )
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
            ),
            "pg_ctl start",
            log,
        )
        started = True
        server = PostgresServer(f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/postgres")
        deadline = time.monotonic() + 30
        while not server.accepts_connections():
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"PostgreSQL on port {port} accepts no connections:\n{tail}", pytrace=False)
            time.sleep(0.1)
        yield server
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("TEST_POSTGRES_URL")
    if external:
        yield PostgresServer(external)
        return
    with _throwaway_cluster() as server:
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def seed(url: str, plan: SeedPlan = SEED_PLAN) -> SeedSummary:
    """Migrate and seed the database at ``url``."""
    upgrade(url)
    engine = create_platform_engine(url)
    try:
        return seed_database(engine, plan)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SeededDatabase:
    url: str
    summary: SeedSummary


@pytest.fixture(scope="session")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SeededDatabase:
    url = f"sqlite:///{tmp_path_factory.mktemp('platform') / 'platform.db'}"
    return SeededDatabase(url, seed(url))


@pytest.fixture(scope="session")
def seeded_postgres(postgres_server: PostgresServer) -> SeededDatabase:
    url = postgres_server.create_database("seeded")
    return SeededDatabase(url, seed(url))
