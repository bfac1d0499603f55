"""Benchmark of ``batch datasets``: rows/s and peak memory on a generated platform database, against pandas.

Steps: (1) generate, or take from the cache in ``.data/bench/``, SQLite platform databases with PAM's
schema at two sizes with the same players and games (``--interactions``, default 10,000,000
interactions, and ``--small``, default 1,000,000; see ``bench/batch_support.py``); (2) at each size,
run ``batch datasets --out DIR`` as a child process, the real command line, and read its wall time,
CPU (``wait4``) and peak RSS (``VmHWM``); the time of each dataset comes from when its file starts and is
complete in the output folder; (3) in the same run, the baseline ``bench/baseline_pandas_datasets.py``
(``pd.read_sql`` of the same queries, the transformation in pandas, ``to_csv``) on the same database;
(4) check that both wrote the same rows, and print the figures, the ratios and a ``target met:
yes/no`` line per target:

- rows/s of ``batch datasets`` >= 3x the baseline's, on the large database;
- memory flat in the number of rows: the peak RSS of ``batch datasets`` grows by less than 25% from
  the small database to the large one (ten times the rows).

``--profile`` also runs ``batch datasets`` under cProfile on the small database and prints where the
time goes. The machine is shared: every row shows the CPU other processes took meanwhile. Exits 0
whatever it measured.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_support import (
    REPO,
    Measured,
    PlatformDatabase,
    available_memory,
    code_version,
    machine_line,
    run_measured,
    yes_no,
)

PYTHON: Final = sys.executable
BATCH: Final = str(Path(PYTHON).with_name("batch"))
BASELINE: Final = str(Path(__file__).resolve().with_name("baseline_pandas_datasets.py"))
CSV_FILES: Final = {"items": "items.csv", "users": "users.csv", "interactions": "interactions.csv"}
#: What the pandas baseline holds per interaction at its peak (measured: about 1.05 KiB), with a margin.
BASELINE_BYTES_PER_ROW: Final = 1400
TARGET_RATIO: Final = 3.0
FLAT_GROWTH: Final = 1.25


@dataclass
class Dataset:
    read: int
    written: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Run:
    """One child's run on one database."""

    name: str
    size: int
    measured: Measured
    datasets: dict[str, Dataset] = field(default_factory=dict)
    error: str | None = None
    #: Distinct users among the interactions written (from the manifest; ours only).
    users: int | None = None

    @property
    def rows(self) -> int:
        return sum(d.read for d in self.datasets.values())

    @property
    def rate(self) -> float:
        return self.rows / self.measured.seconds if self.measured.seconds > 0 else 0.0


class FileWatch:
    """When each dataset file starts (its ``.NAME.partial`` appears) and is complete (``NAME`` appears)."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.folder = folder
        self.names = list(names)
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for name in self.names:
                if name not in self.started and (self.folder / f".{name}.partial").exists():
                    self.started[name] = now
                if name not in self.finished and (self.folder / name).exists():
                    self.finished[name] = now
                    self.started.setdefault(name, now)
            self._stop.wait(0.01)

    def __enter__(self) -> FileWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self, name: str) -> float:
        if name in self.started and name in self.finished:
            return max(self.finished[name] - self.started[name], 1e-3)
        return 0.0


def _child_env() -> dict[str, str]:
    """The environment without the batch's own settings, so that only the arguments decide."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BATCH_")}


def run_ours(db: PlatformDatabase, out: Path, *, columnar: bool = True) -> Run:
    """``batch datasets``: interactions as columns (the default), or row by row (``BATCH_COLUMNAR=false``)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [BATCH, "datasets", "--out", str(out), "--database-url", db.url, "--allow-small"]
    with FileWatch(out, list(CSV_FILES.values())) as watch:
        measured = run_measured(argv, env={**_child_env(), "BATCH_COLUMNAR": "true" if columnar else "false"})
    run = Run("batch datasets" if columnar else "batch datasets (row)", db.interactions, measured)
    if measured.returncode != 0:
        run.error = f"failed, exit {measured.returncode}: {measured.stderr.strip()[-2000:]}"
        return run
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    run.users = int(manifest["datasets"]["interactions"].get("users", 0)) or None
    for dataset, name in CSV_FILES.items():
        counts = manifest["datasets"][dataset]
        run.datasets[dataset] = Dataset(counts["read"], counts["written"], watch.seconds(name))
    return run


def run_baseline(db: PlatformDatabase, out: Path) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    needed, available = db.interactions * BASELINE_BYTES_PER_ROW, available_memory()
    if available and needed > 0.8 * available:
        # The machine is shared: running other people's processes out of memory is not a benchmark.
        return Run(
            "pandas baseline",
            db.interactions,
            Measured(0, 0.0, 0.0, 0, 0.0, "", ""),
            error=f"skipped: it needs about {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available",
        )
    argv = [PYTHON, BASELINE, "--database-url", db.url, "--out", str(out)]
    env = {**_child_env(), "PYTHONPATH": str(REPO)}
    measured = run_measured(argv, env=env)
    run = Run("pandas baseline", db.interactions, measured)
    if measured.returncode != 0:
        run.error = f"failed, exit {measured.returncode}: {measured.stderr.strip()[-2000:]}"
        return run
    result = json.loads(measured.stdout.strip().splitlines()[-1])
    for dataset in CSV_FILES:
        counts = result[dataset]
        run.datasets[dataset] = Dataset(counts["read"], counts["written"], counts["seconds"])
    return run


def _fingerprint(path: Path) -> tuple[int, int]:
    """(lines, an order-independent sum of the lines' hashes): equal for files with the same lines."""
    lines = total = 0
    with path.open("rb") as handle:
        for line in handle:
            lines += 1
            total = (total + hash(line)) & 0xFFFF_FFFF_FFFF_FFFF
    return lines, total


def same_rows(a: Path, b: Path) -> str:
    """Whether two CSV files hold the same lines, in any order."""
    (lines_a, sum_a), (lines_b, sum_b) = _fingerprint(a), _fingerprint(b)
    if lines_a != lines_b:
        return f"no ({lines_a:,} vs {lines_b:,} lines)"
    return f"yes ({lines_a:,} lines)" if sum_a == sum_b else f"no (same {lines_a:,} lines count, different lines)"


def profile_ours(db: PlatformDatabase, out: Path, top: int) -> None:
    """``batch datasets`` under cProfile in this process; the functions taking the most time."""
    from batch.cli import main as batch_main

    shutil.rmtree(out, ignore_errors=True)
    profiler = cProfile.Profile()
    sink = io.StringIO()
    stdout = sys.stdout
    sys.stdout = sink
    try:
        profiler.runcall(batch_main, ["datasets", "--out", str(out), "--database-url", db.url, "--allow-small"])
    finally:
        sys.stdout = stdout
    stats = pstats.Stats(profiler, stream=sys.stdout)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n== cProfile of batch datasets on {db.interactions:,} interactions ({total:.1f} s profiled)")
    groups = {
        "clickstream normalization (clickstream/)": "/clickstream/",
        "batch transform (batch/transform.py)": "/batch/transform.py",
        "batch datasets loop, stats (batch/datasets.py, minimums.py)": ("/batch/datasets.py", "/batch/minimums.py"),
        "reading rows (batch/database.py, SQLAlchemy, sqlite3)": ("/batch/database.py", "sqlalchemy", "sqlite3"),
        "pydantic validation": "pydantic",
        "json": "/json/",
        "csv writing": "csv",
    }
    by_group: dict[str, float] = dict.fromkeys(groups, 0.0)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        where = f"{filename}:{function}"
        for name, needles in groups.items():
            if any(n in where for n in ((needles,) if isinstance(needles, str) else needles)):
                by_group[name] += tottime
                break
    print("own time by area (tottime; what is left is builtins and the interpreter):")
    for name, seconds in sorted(by_group.items(), key=lambda item: -item[1]):
        print(f"  {seconds:7.2f} s  {seconds / total:5.1%}  {name}")
    print(f"top {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def report(runs: Sequence[Run], db_info: dict[int, dict[str, Any]]) -> None:
    print("\n== Results")
    header = (
        "database",
        "run",
        "rows read",
        "written",
        "seconds",
        "rows/s",
        "CPU s",
        "rows/CPU s",
        "peak RSS MiB",
        "others",
    )
    rows = []
    for run in runs:
        if run.error:
            shown = "skipped" if run.error.startswith("skipped") else "failed"
            rows.append((f"{run.size:,}", run.name, "-", "-", "-", shown, "-", "-", "-", "-"))
            continue
        written = sum(d.written for d in run.datasets.values())
        m = run.measured
        rows.append(
            (
                f"{run.size:,}",
                run.name,
                f"{run.rows:,}",
                f"{written:,}",
                f"{m.seconds:.1f}",
                _fmt_rate(run.rate),
                f"{m.cpu_seconds:.1f}",
                _fmt_rate(run.rows / m.cpu_seconds if m.cpu_seconds > 0 else 0.0),
                f"{m.peak_rss_mib:,.0f}",
                f"{m.others_cores:.2f}",
            )
        )
    _table(rows, header)
    print(" rows read: items + users + interactions; seconds: the child's whole life (start-up included);")
    print(" rows/CPU s: rows per second of the child's own CPU time (less sensitive to a busy machine);")
    print(" peak RSS: the child's VmHWM; others: CPU cores other processes used meanwhile")

    print("\n== Per dataset (rows read per second of that dataset's own time)")
    per = []
    for run in runs:
        for dataset, d in run.datasets.items():
            per.append((f"{run.size:,}", run.name, dataset, f"{d.read:,}", f"{d.seconds:.2f}", _fmt_rate(d.rate)))
    _table(per, ("database", "run", "dataset", "rows read", "seconds", "rows/s"))
    for size, info in sorted(db_info.items()):
        print(
            f" database {size:,}: {info['game_sessions']:,} game sessions + {info['favorites']:,} favourites, "
            f"{info['players']:,} players, {info['games']:,} games, {info['bytes'] / 2**20:,.0f} MiB"
        )


def verdicts(runs: Sequence[Run], large: int, small: int | None) -> None:
    def find(name: str, size: int) -> Run | None:
        for run in runs:
            if run.name == name and run.size == size and not run.error:
                return run
        return None

    print("\n== Targets")
    ours, base = find("batch datasets", large), find("pandas baseline", large)
    if ours and base and base.rate > 0:
        ratio = ours.rate / base.rate
        print(
            f"rows/s on {large:,} interactions: batch datasets {ours.rate:,.0f} vs pandas {base.rate:,.0f} "
            f"= {ratio:.2f}x (target >= {TARGET_RATIO:g}x) -> target met: {yes_no(ratio >= TARGET_RATIO)}"
        )
        if ours.measured.cpu_seconds > 0 and base.measured.cpu_seconds > 0:
            per_cpu = (ours.rows / ours.measured.cpu_seconds) / (base.rows / base.measured.cpu_seconds)
            cores = ours.measured.cpu_seconds / ours.measured.seconds if ours.measured.seconds > 0 else 0.0
            print(
                f"  the same per CPU second: {per_cpu:.2f}x (batch datasets used {cores:.1f} cores on average;"
                " BATCH_PARALLEL reads and prepares in two more threads)"
            )
    else:
        print("rows/s vs the pandas baseline: not measured -> target met: unknown")
    if small is None:
        print("memory flat in the number of rows: one size only (--small 0) -> target met: unknown")
        return
    ours_small = find("batch datasets", small)
    base_small = find("pandas baseline", small)
    if ours and ours_small:
        growth = ours.measured.peak_rss_bytes / ours_small.measured.peak_rss_bytes
        line = (
            f"peak RSS from {small:,} to {large:,} interactions: batch datasets {ours_small.measured.peak_rss_mib:,.0f}"
            f" -> {ours.measured.peak_rss_mib:,.0f} MiB ({growth:.2f}x)"
        )
        if base and base_small:
            base_growth = base.measured.peak_rss_bytes / base_small.measured.peak_rss_bytes
            line += (
                f"; pandas {base_small.measured.peak_rss_mib:,.0f} -> {base.measured.peak_rss_mib:,.0f} MiB "
                f"({base_growth:.2f}x)"
            )
        print(line)
        added = ours.rows - ours_small.rows
        if added > 0:
            extra = f"batch datasets {(ours.measured.peak_rss_bytes - ours_small.measured.peak_rss_bytes) / added:,.1f}"
            if base and base_small:
                extra += f", pandas {(base.measured.peak_rss_bytes - base_small.measured.peak_rss_bytes) / added:,.0f}"
            print(f"  peak RSS added per added row: {extra} bytes")
        if ours.users and ours_small.users:
            print(
                f"  distinct users among the interactions: {ours_small.users:,} -> {ours.users:,} (batch datasets "
                "keeps a count per user for the minimums check: memory grows with users, not rows)"
            )
        print(
            f"memory flat (grows < {FLAT_GROWTH - 1:.0%} for {large / small:g}x the rows) -> target met: "
            f"{yes_no(growth < FLAT_GROWTH)}"
        )
    else:
        print("memory flat in the number of rows: not measured -> target met: unknown")


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(render(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(render(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=10_000_000, help="the large database (default 10M)")
    parser.add_argument("--small", type=int, default=1_000_000, help="the small database (0: no second size)")
    parser.add_argument(
        "--players", type=int, default=0, help="players, at every size (default: the large size's interactions / 25)"
    )
    parser.add_argument("--games", type=int, default=2000, help="games in the catalog (default 2000)")
    parser.add_argument("--days", type=float, default=90.0, help="days of history (default 90)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-baseline", action="store_true", help="run batch datasets only")
    parser.add_argument(
        "--row-path", action="store_true", help="also run batch datasets row by row (BATCH_COLUMNAR=false)"
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile batch datasets on the small database")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--keep", action="store_true", help="keep the output folders (printed)")
    args = parser.parse_args(argv)

    print("batch datasets benchmark")
    print(machine_line())
    print(f"code: {code_version()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-datasets-"))
    try:
        return _run(args, workdir)
    except Exception as exc:  # a benchmark reports, it does not fail
        print(f"benchmark did not complete: {exc!r}; every target met: unknown")
        return 0
    finally:
        if args.keep:
            print(f"outputs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    sizes = sorted({args.interactions, *([args.small] if args.small else [])})
    # Every size has the players of the largest: only the number of rows changes between them.
    players = args.players or PlatformDatabase(max(sizes)).player_count
    databases = {
        size: PlatformDatabase(size, players=players, games=args.games, days=args.days, seed=args.seed)
        for size in sizes
    }
    info: dict[int, dict[str, Any]] = {}
    for size, db in databases.items():
        info[size] = db.ensure(log=_log)
    runs: list[Run] = []
    steps: list[tuple[str, Callable[[PlatformDatabase, Path], Run]]] = [("ours", run_ours)]
    if args.row_path:
        steps.append(("ours-row", lambda db, out: run_ours(db, out, columnar=False)))
    if not args.skip_baseline:
        steps.append(("pandas", run_baseline))
    for size, db in databases.items():
        for label, step in steps:
            out = workdir / f"{label}-{size}"
            _log(f"{label} on {size:,} interactions (load average {os.getloadavg()[0]:.2f}) ...")
            run = step(db, out)
            runs.append(run)
            if run.error:
                print(f"  {run.name}: {run.error}")
            else:
                _log(
                    f"  {run.rows:,} rows in {run.measured.seconds:.1f} s = {run.rate:,.0f} rows/s, "
                    f"peak RSS {run.measured.peak_rss_mib:,.0f} MiB"
                )
        if not args.skip_baseline:
            ours_csv = workdir / f"ours-{size}" / "interactions.csv"
            base_csv = workdir / f"pandas-{size}" / "interactions.csv"
            if ours_csv.exists() and base_csv.exists():
                print(f"  same interactions rows as the baseline: {same_rows(ours_csv, base_csv)}")
        ours = workdir / f"ours-{size}"
        if (ours / "manifest.json").exists():  # kept for bench/sims_training.py
            shutil.rmtree(db.datasets_dir, ignore_errors=True)
            shutil.move(ours, db.datasets_dir)
        for label, _ in steps:  # the CSVs of a 10M run are a GB: free the disk as we go
            if not args.keep:
                shutil.rmtree(workdir / f"{label}-{size}", ignore_errors=True)
    report(runs, info)
    verdicts(runs, max(sizes), min(sizes) if len(sizes) > 1 else None)
    if args.profile:
        profile_ours(databases[min(sizes)], workdir / "profile", args.top)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


def _log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
