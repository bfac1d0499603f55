"""``pam``: the player account management platform's command line.

``pam db upgrade`` migrates the platform database to the newest schema; ``pam db seed`` fills it with a
generated catalog, players and months of play history. The database is ``PAM_DATABASE_URL``
(default: an embedded SQLite file, ``.data/platform.db``) unless ``--database-url`` says otherwise.
``pam serve`` runs the lobby service (and its page) under uvicorn; ``pam token PLAYER_ID`` prints a token
signed with the configured development secret or private key.
Exit status: 0 done, 1 the command could not do its job (e.g. already seeded), 2 a wrong setting or
argument, 3 the database failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from pam.db.engine import create_platform_engine, shown_url
from pam.db.migrate import current_revision, downgrade, head_revision, new_revision, upgrade
from pam.db.seed import SeedError, SeedPlan, SeedProgress, seed_database
from pam.settings import PamSettings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_DATABASE = 3


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pam", description="Player account management platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    db = commands.add_parser("db", help="the platform database")
    db_commands = db.add_subparsers(dest="db_command", required=True)

    def with_url(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: $PAM_DATABASE_URL)")
        return sub

    up = with_url(db_commands.add_parser("upgrade", help="migrate the schema to the newest revision"))
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    down = with_url(db_commands.add_parser("downgrade", help="migrate the schema back to a revision"))
    down.add_argument("revision", help="target revision (base: no tables)")
    with_url(db_commands.add_parser("current", help="print the schema revision of the database"))
    rev = with_url(db_commands.add_parser("revision", help="write a new migration (developers)"))
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--empty", action="store_true", help="do not compare the models with the database")

    seed = with_url(db_commands.add_parser("seed", help="fill the database with generated games, players, play"))
    seed.add_argument("--players", type=_positive_int, default=2000, help="registered players (default 2000)")
    seed.add_argument("--sessions", type=_positive_int, default=20_000, help="app sessions played (default 20000)")
    seed.add_argument("--days", type=_positive_float, default=90.0, help="days of history (default 90)")
    seed.add_argument("--games", type=_positive_int, default=300, help="games in the catalog (default 300)")
    seed.add_argument("--seed", type=int, default=0, help="random seed: same arguments, same rows (default 0)")
    seed.add_argument("--end", type=_day, default=None, help="the history ends at this day's midnight UTC (today)")
    seed.add_argument("--chunk-size", type=_positive_int, default=5000, help="rows per insert (default 5000)")
    seed.add_argument("--replace", action="store_true", help="delete what the database holds first")
    seed.add_argument("--upgrade", action="store_true", help="migrate the schema first")

    serve = commands.add_parser("serve", help="run the lobby service (API and page)")
    serve.add_argument("--host", default=None, help="address to listen on (default: $PAM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $PAM_PORT or 8080)")
    serve.add_argument("--workers", type=int, default=None, help="processes (default: $PAM_WORKERS or 1)")
    serve.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: $PAM_DATABASE_URL)")
    token = commands.add_parser("token", help="print a token for a player, signed with the configured key")
    token.add_argument("player_id", help="the token's subject")
    token.add_argument("--admin", action="store_true", help="with the admin role")
    token.add_argument("--ttl", type=_positive_int, default=3600, help="seconds until it expires (default 3600)")
    return parser


def _serve(settings: PamSettings, err: Console) -> int:
    from pam.api.server import serve

    err.print(f"pam: serving the lobby on http://{settings.host}:{settings.port} (page: /lobby)")
    serve(settings)
    return EXIT_OK


def _token(args: argparse.Namespace, settings: PamSettings, out: Console) -> int:
    from pam.api.auth import TokenIssuer
    from pam.api.models import is_player_id

    if not is_player_id(args.player_id):
        raise SettingsError(f"not a player id: {args.player_id!r}")
    issuer = TokenIssuer(settings)
    out.print(issuer.issue(args.player_id, admin=args.admin, ttl_seconds=args.ttl), soft_wrap=True, highlight=False)
    return EXIT_OK


@contextmanager
def _seed_progress(console: Console) -> Iterator[Callable[[SeedProgress], None] | None]:
    """A progress bar on a terminal; nothing when stderr is a file or a pipe."""
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("seeding"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("day {task.fields[day]}/{task.fields[days]}  {task.fields[sessions]} game sessions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("seed", total=None, day=0, days="?", sessions=0)

        def update(at: SeedProgress) -> None:
            bar.update(
                task,
                total=at.days_total,
                completed=at.days_done,
                day=f"{at.days_done:.0f}",
                days=f"{at.days_total:g}",
                sessions=f"{at.game_sessions:,}",
            )

        yield update


def _run(args: argparse.Namespace, settings: PamSettings, out: Console, err: Console) -> int:
    if args.command == "serve":
        return _serve(settings, err)
    if args.command == "token":
        return _token(args, settings, out)
    url = settings.database_url.get_secret_value()
    where = shown_url(url)
    command = args.db_command
    if command in ("upgrade", "downgrade"):
        (upgrade if command == "upgrade" else downgrade)(url, args.revision)
        engine = create_platform_engine(url)
        try:
            out.print(f"{where}: schema at revision {current_revision(engine) or 'base'}")
        finally:
            engine.dispose()
        return EXIT_OK
    if command == "revision":
        new_revision(url, args.message, autogenerate=not args.empty)
        return EXIT_OK
    engine = create_platform_engine(url)
    try:
        if command == "current":
            current = current_revision(engine)
            state = "up to date" if current == head_revision() else f"newest is {head_revision()}"
            out.print(f"{where}: schema at revision {current or 'none'} ({state})")
            return EXIT_OK
        if args.upgrade:
            upgrade(url)
        plan = SeedPlan(
            players=args.players,
            sessions=args.sessions,
            days=args.days,
            games=args.games,
            seed=args.seed,
            chunk_size=args.chunk_size,
            **({"end": args.end} if args.end is not None else {}),
        )
        err.print(
            f"seeding {where}: {plan.games} games, {plan.players} players, {plan.sessions} sessions over "
            f"{plan.days:g} days up to {plan.end.isoformat()} (seed {plan.seed})"
        )
        with _seed_progress(err) as progress:
            summary = seed_database(engine, plan, replace=args.replace, progress=progress)
        out.print(f"seeded {where}")
        for line in summary.lines():
            out.print(line)
        return EXIT_OK
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        settings = load_settings(
            database_url=getattr(args, "database_url", None),
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            workers=getattr(args, "workers", None),
        )
    except SettingsError as exc:
        err.print(f"pam: {exc}", highlight=False)
        return EXIT_CONFIGURATION
    try:
        return _run(args, settings, out, err)
    except SettingsError as exc:
        err.print(f"pam: {exc}", highlight=False)
        return EXIT_CONFIGURATION
    except SeedError as exc:
        err.print(f"pam: {exc}")
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"pam: database error: {first_line}")
        return EXIT_DATABASE


if __name__ == "__main__":
    sys.exit(main())
