"""Helpers of the batch benchmarks: a large platform database, generated fast, and child-process measures.

:class:`PlatformDatabase` writes a SQLite platform database of any size with PAM's real schema (the
Alembic migrations of ``pam.db``) and content shaped like ``pam db seed``'s: the catalog and players of
``clickstream.generator``, and game sessions and favourites drawn straight from the same model (player
activity skew, preferred categories, Zipf popularity, trending games that grow, release dates, licensed
countries), without simulating every round and heartbeat of the clickstream, which is what makes the
seed too slow for ten million rows. Rows go in with ``executemany`` in one transaction, with the
journal and fsync off and the secondary indexes built after the load; the file is cached under
``.data/bench/`` by its parameters, so a rerun skips the generation.

:func:`run_measured` runs a child process and returns its wall time, CPU and peak RSS (its ``VmHWM``),
with the CPU of other processes on the machine meanwhile.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from clickstream.generator import Catalog, Game, Player, generate_catalog, generate_players
from clickstream.generator.catalog import JURISDICTIONS
from clickstream.generator.players import COUNTRY_WEIGHTS, PLATFORM_WEIGHTS, PLATFORMS, STAKE_STEPS, currency_of

REPO: Final = Path(__file__).resolve().parents[1]
CACHE_DIR: Final = REPO / ".data" / "bench"
#: Bumped whenever the generator's output changes, so that cached files are not reused.
GENERATOR_VERSION: Final = 1
DAY: Final = 86_400.0
#: Where a launch comes from (the lobby rows of the seed, about as often as it shows them).
LOBBY_SECTIONS: Final = (
    ("popular", 23),
    ("for-you", 21),
    ("search", 21),
    ("trending", 9),
    ("because-you-played", 8),
    ("new-releases", 3),
    ("category", 12),
    (None, 3),
)
#: The share of a player's games taken from their preferred categories (the rest: the whole lobby).
PREFERRED_SHARE: Final = 0.6
ANONYMOUS_SHARE: Final = 0.07
FAVORITE_SHARE: Final = 0.045
GAMES_PER_SESSION_MEAN: Final = 2.2
MAX_GAMES_PER_SESSION: Final = 8
ROUNDS_MEAN: Final = 30.0
MAX_ROUNDS: Final = 400
INSERT_CHUNK: Final = 50_000


# ------------------------------------------------------------------------------------ the database


@dataclass(frozen=True, slots=True)
class PlatformDatabase:
    """A generated platform database: ``interactions`` rows of play history (game sessions plus
    favourites), by ``players`` players on ``games`` games over the ``days`` before ``end``."""

    interactions: int
    players: int = 0  # 0: one player per 25 interactions (at least 2,000)
    games: int = 2000
    days: float = 90.0
    seed: int = 7
    end: date = date(2026, 11, 1)

    @property
    def player_count(self) -> int:
        return self.players or max(2000, self.interactions // 25)

    @property
    def path(self) -> Path:
        name = (
            f"platform-i{self.interactions}-p{self.player_count}-g{self.games}-d{self.days:g}"
            f"-s{self.seed}-e{self.end.isoformat()}-v{GENERATOR_VERSION}.sqlite"
        )
        return CACHE_DIR / name

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def datasets_dir(self) -> Path:
        """Where the last ``batch datasets`` output of this database is kept (for the training benchmark)."""
        return self.path.with_name(f"datasets-{self.path.stem}")

    @property
    def info_path(self) -> Path:
        return self.path.with_suffix(".json")

    def info(self) -> dict[str, Any] | None:
        """What the generation wrote (None if the database is not there)."""
        if not self.path.exists() or not self.info_path.exists():
            return None
        data: dict[str, Any] = json.loads(self.info_path.read_text(encoding="utf-8"))
        return data

    def ensure(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        """The database, generated unless a cached one with these parameters exists; its info."""
        cached = self.info()
        if cached is not None:
            log(f"platform database (cached): {self.path.name}")
            return cached
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.unlink(missing_ok=True)
        log(f"generating {self.path.name} ({self.interactions:,} interactions) ...")
        started = time.monotonic()
        counts = _generate(self, partial, log)
        seconds = time.monotonic() - started
        partial.replace(self.path)
        info = {
            "parameters": {**asdict(self), "end": self.end.isoformat(), "players": self.player_count},
            **counts,
            "bytes": self.path.stat().st_size,
            "seconds": round(seconds, 1),
        }
        self.info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        log(f"generated in {seconds:.0f} s: {counts}")
        return info


def _migrate(path: Path) -> None:
    """PAM's schema, by its own migrations (as ``pam db upgrade`` does)."""
    from pam.db.migrate import upgrade

    upgrade(f"sqlite:///{path}")


def _generate(spec: PlatformDatabase, path: Path, log: Callable[[str], None]) -> dict[str, int]:
    _migrate(path)
    catalog = generate_catalog(spec.games, spec.seed, as_of=spec.end)
    players = generate_players(spec.player_count, spec.seed)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-524288")  # 512 MiB
        # Secondary indexes are built once at the end (a sort), not maintained row by row.
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('game_sessions', 'favorites')"
        ).fetchall()
        connection.execute("BEGIN")
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.executemany(
            "INSERT INTO games (id, title, provider, category, volatility, rtp, release_date, jurisdictions, "
            "enabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    g.game_id,
                    g.title,
                    g.provider,
                    g.category,
                    g.volatility,
                    g.rtp,
                    g.release_date.isoformat(),
                    json.dumps(list(g.jurisdictions)),
                    int(g.enabled),
                )
                for g in catalog
            ],
        )
        connection.executemany(
            "INSERT INTO players (id, country, platform, currency, created_at) VALUES (?, ?, ?, ?, ?)",
            _player_rows(players, spec),
        )
        history = _History(spec, catalog, players)
        sessions = 0
        for chunk in _chunks(history.game_sessions(), INSERT_CHUNK):
            connection.executemany(
                "INSERT INTO game_sessions (player_id, game_id, session_id, started_at, ended_at, rounds, "
                "total_stake, total_win, first_stake, currency, platform, country, lobby_section) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                chunk,
            )
            sessions += len(chunk)
            if sessions % 1_000_000 < INSERT_CHUNK:
                log(f"  {sessions:,} game sessions")
        favorites = sorted(history.favorites.values(), key=lambda row: (row[3], row[0], row[1]))
        connection.executemany(
            "INSERT INTO favorites (player_id, game_id, session_id, added_at) VALUES (?, ?, ?, ?)", favorites
        )
        log("  building the indexes")
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    return {
        "games": len(catalog),
        "players": len(players),
        "game_sessions": sessions,
        "anonymous_game_sessions": history.anonymous,
        "favorites": len(favorites),
        "interactions": sessions + len(favorites),
    }


def _chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        chunk = list(itertools.islice(rows, size))
        if not chunk:
            return
        yield chunk


def _player_rows(players: Sequence[Player], spec: PlatformDatabase) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(f"bench-registrations:{spec.seed}")
    start = _midnight(spec.end) - spec.days * DAY
    for player in players:
        registered = start - rng.uniform(1.0, 3 * 365.0) * DAY
        yield (player.player_id, player.country, player.platform, player.currency, _Clock.text(registered))


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class _Clock:
    """Epoch seconds as SQLAlchemy writes a DateTime into SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``)."""

    _days: dict[int, str] = {}

    @classmethod
    def text(cls, seconds: float) -> str:
        millis = int(seconds * 1000)
        day, rest = divmod(millis, 86_400_000)
        prefix = cls._days.get(day)
        if prefix is None:
            prefix = cls._days[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d ")
        second, milli = divmod(rest, 1000)
        hour, second = divmod(second, 3600)
        minute, second = divmod(second, 60)
        return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}000"


@dataclass(slots=True)
class _Shelf:
    games: list[Game]
    cumulative: list[float]

    def pick(self, rng: random.Random) -> Game:
        return self.games[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


@dataclass
class _History:
    """Game sessions in time order, and the favourites they leave, drawn from the generator's model."""

    spec: PlatformDatabase
    catalog: Catalog
    players: Sequence[Player]
    favorites: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    anonymous: int = 0
    _shelves: dict[tuple[int, str, str | None], _Shelf | None] = field(default_factory=dict)
    _licensed: dict[tuple[str, str | None], list[Game]] = field(default_factory=dict)

    def _shelf(self, day: int, country: str, category: str | None) -> _Shelf | None:
        key = (day, country, category)
        if key in self._shelves:
            return self._shelves[key]
        licensed = self._licensed.get((country, category))
        if licensed is None:
            licensed = self._licensed[(country, category)] = [
                g
                for g in self.catalog
                if g.enabled and country in g.jurisdictions and (category is None or g.category == category)
            ]
        today = date.fromordinal(self.spec.end.toordinal() - math.ceil(self.spec.days) + day)
        games = [g for g in licensed if g.release_date <= today]
        shelf = None
        if games:
            weights = [g.popularity * (1.0 + g.trend_per_day * day) for g in games]
            shelf = _Shelf(games, list(itertools.accumulate(weights)))
        self._shelves[key] = shelf
        return shelf

    def game_sessions(self) -> Iterator[tuple[Any, ...]]:
        spec = self.spec
        rng = random.Random(f"bench-history:{spec.seed}")
        end = _midnight(spec.end)
        start = end - spec.days * DAY
        app_sessions = spec.interactions / (GAMES_PER_SESSION_MEAN * (1 + FAVORITE_SHARE))
        mean_gap = spec.days * DAY / app_sessions
        players = self.players
        cumulative = list(itertools.accumulate(p.activity for p in players))
        sections = [s for s, _ in LOBBY_SECTIONS]
        section_weights = list(itertools.accumulate(w for _, w in LOBBY_SECTIONS))
        countries = list(itertools.accumulate(COUNTRY_WEIGHTS))
        platforms = list(itertools.accumulate(PLATFORM_WEIGHTS))
        written = 0
        moment = start
        while written + len(self.favorites) < spec.interactions:
            # Sessions spread evenly over the span, whatever the number of games they turn out to hold.
            progress = (written + len(self.favorites)) / spec.interactions
            moment = max(moment, start + progress * spec.days * DAY) + rng.uniform(0.0, mean_gap)
            day = int((moment - start) // DAY)
            player: Player | None = None
            if rng.random() < ANONYMOUS_SHARE:
                country = JURISDICTIONS[bisect.bisect(countries, rng.random() * countries[-1])]
                platform: str = PLATFORMS[bisect.bisect(platforms, rng.random() * platforms[-1])]
                stake_level = 3
                preferred: tuple[str, ...] = ()
            else:
                player = players[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
                country, platform, stake_level = player.country, player.platform, player.stake_level
                preferred = player.preferred_categories
            currency = currency_of(country)
            # A time-ordered (version 7 style) UUID: the session's start in milliseconds, then random bits.
            bits = (int(moment * 1000) << 80) | rng.getrandbits(80)
            hexa = f"{bits:032x}"
            session_id = f"{hexa[:8]}-{hexa[8:12]}-7{hexa[13:16]}-{hexa[16:20]}-{hexa[20:]}"
            n_games = min(MAX_GAMES_PER_SESSION, 1 + int(rng.expovariate(1.0 / (GAMES_PER_SESSION_MEAN - 1))))
            played: set[str] = set()
            at = moment + rng.uniform(5.0, 90.0)
            for _ in range(3 * n_games):
                if len(played) == n_games:
                    break
                category = rng.choice(preferred) if preferred and rng.random() < PREFERRED_SHARE else None
                shelf = self._shelf(day, country, category) or self._shelf(day, country, None)
                if shelf is None:
                    break
                game = shelf.pick(rng)
                if game.game_id in played:
                    continue
                played.add(game.game_id)
                rounds = min(MAX_ROUNDS, 1 + int(rng.expovariate(1.0 / (ROUNDS_MEAN - 1))))
                step = min(len(STAKE_STEPS) - 1, max(0, stake_level + rng.randint(-1, 1)))
                first_stake = STAKE_STEPS[step]
                total_stake = round(first_stake * rounds * rng.uniform(0.8, 1.6), 2)
                total_win = round(total_stake * game.rtp * rng.uniform(0.4, 1.5), 2)
                ended = at + rounds * rng.uniform(3.0, 9.0)
                section = sections[bisect.bisect(section_weights, rng.random() * section_weights[-1])]
                if section == "category":
                    section = game.category
                player_id = player.player_id if player is not None else None
                yield (
                    player_id,
                    game.game_id,
                    session_id,
                    _Clock.text(at),
                    _Clock.text(ended),
                    rounds,
                    total_stake,
                    total_win,
                    first_stake,
                    currency,
                    platform,
                    country,
                    section,
                )
                written += 1
                if player_id is None:
                    self.anonymous += 1
                elif rng.random() < FAVORITE_SHARE:
                    key = (player_id, game.game_id)
                    if key not in self.favorites:
                        added = _Clock.text(at + rng.uniform(1.0, 60.0))
                        self.favorites[key] = (player_id, game.game_id, session_id, added)
                at = ended + rng.uniform(5.0, 60.0)


# ------------------------------------------------------------------------------------ measurement


@dataclass(frozen=True, slots=True)
class Measured:
    """One child process: exit status, wall seconds, CPU seconds, peak RSS, others' CPU meanwhile."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    others_cores: float
    stdout: str
    stderr: str

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / (1024 * 1024)


def _busy_seconds() -> float:
    parts = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _peak_rss(pid: int) -> int:
    """``VmHWM`` of a running process in bytes (0 once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    timeout: float = 3600.0,
) -> Measured:
    """Run ``argv`` to the end; its wall time, its CPU (``wait4``'s rusage: that child and the children
    it waited for) and its peak RSS: its ``VmHWM``, read every 20 ms while it runs. (``ru_maxrss`` would
    not do: a forked child starts with its parent's resident size as its maximum, and exec keeps it.)
    ``others_cores`` is the machine's busy CPU minus the child's, per second of wall time."""
    out_path = CACHE_DIR / f".child-{os.getpid()}.out"
    err_path = CACHE_DIR / f".child-{os.getpid()}.err"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    busy_before = _busy_seconds()
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(list(argv), stdout=out, stderr=err, env=dict(env) if env is not None else None)
        if on_start is not None:
            on_start(process.pid)
        deadline = started + timeout
        peak = 0
        while True:
            peak = max(peak, _peak_rss(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.02)
    seconds = time.monotonic() - started
    busy = _busy_seconds() - busy_before
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return Measured(
        returncode=process.returncode,
        seconds=seconds,
        cpu_seconds=cpu,
        peak_rss_bytes=peak,
        others_cores=max(0.0, busy - cpu) / seconds if seconds > 0 else 0.0,
        stdout=stdout,
        stderr=stderr,
    )


def available_memory() -> int:
    """``MemAvailable`` of the machine in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def machine_line() -> str:
    """CPUs, memory and the load average now."""
    load = os.getloadavg()
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    return (
        f"machine: {os.cpu_count()} CPUs{memory}, Python {sys.version.split()[0]}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def code_version(paths: Sequence[str] = ("batch", "clickstream", "bench")) -> str:
    """The commit measured, and the files under ``paths`` that differ from it (a shared work tree)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def yes_no(ok: bool) -> str:
    return "yes" if ok else "no"
