"""``batch``: the batch pipeline's command line.

``batch datasets`` reads items, users and interactions from the platform database (any SQLAlchemy URL,
``BATCH_DATABASE_URL``, with the SQL of ``BATCH_QUERIES_FILE``), normalizes interactions as the stream
does, and writes the Personalize dataset CSVs, their schemas, the lobby's ``games.json`` and a
manifest to ``s3://$BATCH_S3_BUCKET/$BATCH_S3_PREFIX/`` or to a folder (``--out``). The files are
published only when the checks pass: a lobby catalog with games, and the dataset minimums of training
(``--allow-small`` publishes below them); otherwise the previous files stay as they were. Exit status:
0 published, 1 not published (a check failed: each is named with its cause), 2 a wrong setting,
argument, queries or mapping file, 3 the database or the output failed (nothing published; or, when
publishing itself failed, part of the files and no manifest, which the message says: apply imports
nothing new without one).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from batch.aws import s3_client
from batch.database import RowSource
from batch.datasets import DatasetBuilder, DatasetsSummary, ProgressCallback
from batch.errors import BatchError, ConfigurationError
from batch.personalize.command import add_personalize_commands
from batch.queries import DatasetQueries
from batch.settings import BatchSettings, load_settings
from batch.similar.command import add_similar_commands
from batch.sinks import DatasetSink, LocalFolderSink, S3Sink
from clickstream.mapping import EventMapping, MappingError

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_CONFIGURATION = 2
EXIT_FAILED = 3


#: ``run(args, out, err) -> exit status`` of one subcommand.
CommandRunner = Callable[[argparse.Namespace, Console, Console], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch", description="Platform database -> Amazon Personalize.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_datasets(commands)
    # Each further subcommand lives in its own module, which adds its parser and sets ``run``.
    add_personalize_commands(commands)
    add_similar_commands(commands)
    return parser


def _add_datasets(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    datasets = commands.add_parser(
        "datasets",
        help="write the Personalize datasets, schemas and games.json; publish them if the checks pass",
        description="Write the Personalize datasets, their schemas and games.json; check the catalog and the "
        "training minimums; publish the files only if the checks pass.",
    )
    where = datasets.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, help="write to this local folder instead of S3")
    where.add_argument("--bucket", default=None, help="S3 bucket (default: $BATCH_S3_BUCKET)")
    datasets.add_argument("--prefix", default=None, help="S3 key prefix (default: $BATCH_S3_PREFIX, datasets)")
    datasets.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: $BATCH_DATABASE_URL)")
    datasets.add_argument("--queries", type=Path, default=None, help="queries file (default: $BATCH_QUERIES_FILE)")
    datasets.add_argument("--mapping", type=Path, default=None, help="event mapping (default: $BATCH_MAPPING_FILE)")
    datasets.add_argument("--chunk-size", type=int, default=None, help="rows fetched at a time (default 5000)")
    datasets.add_argument(
        "--allow-small",
        action="store_true",
        help="publish the datasets (exit 0) even when they are below the training minimums (never an empty catalog)",
    )
    datasets.set_defaults(run=_datasets)


def _sink(settings: BatchSettings, out: Path | None) -> DatasetSink:
    if out is not None:
        return LocalFolderSink(out)
    if settings.s3_bucket is None:
        raise ConfigurationError("nowhere to write the datasets: give --out DIR, or set BATCH_S3_BUCKET (or --bucket)")
    return S3Sink(
        s3_client(settings.region), settings.s3_bucket, settings.s3_prefix, part_size=settings.upload_part_bytes
    )


@contextmanager
def _progress(console: Console) -> Iterator[ProgressCallback | None]:
    """Rows read per dataset, live on a terminal; nothing when stderr is a file or a pipe."""
    if not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<13}"),
        TextColumn("{task.completed:>12,.0f} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def update(dataset: str, rows: int, done: bool) -> None:
            if dataset not in tasks:
                tasks[dataset] = bar.add_task(dataset, total=None)
            bar.update(tasks[dataset], completed=rows)
            if done:
                bar.update(tasks[dataset], total=rows)

        yield update


def _datasets(args: argparse.Namespace, out: Console, err: Console) -> int:
    settings = load_settings(
        database_url=args.database_url,
        queries_file=args.queries,
        mapping_file=args.mapping,
        s3_bucket=args.bucket,
        s3_prefix=args.prefix,
        chunk_size=args.chunk_size,
    )
    queries = DatasetQueries.load(settings.queries_file)
    try:
        mapping = EventMapping.load(settings.mapping_file)
    except MappingError as exc:
        raise ConfigurationError(str(exc)) from None
    sink = _sink(settings, args.out)
    with RowSource(settings.database_url.get_secret_value(), chunk_size=settings.chunk_size) as source:
        err.print(f"datasets from {source.shown_url} to {sink.location('')}")
        with _progress(err) as progress:
            builder = DatasetBuilder(
                source,
                sink,
                queries,
                mapping,
                dedup_memory=settings.dedup_memory,
                progress=progress,
                allow_small=args.allow_small,
            )
            summary = builder.run()
    _report(summary, out)
    return _verdict(summary, args.allow_small, out)


def _report(summary: DatasetsSummary, out: Console) -> None:
    for line in summary.lines():
        out.print(line)
    out.print()
    for line in summary.minimums.lines():
        out.print(line)


def _verdict(summary: DatasetsSummary, allow_small: bool, out: Console) -> int:
    """Say whether the files were published and, if not, why and what to do; returns the exit status."""
    out.print()
    if summary.published:
        out.print(f"Published to {summary.location}")
        if summary.problems:
            failed = ", ".join(problem.check for problem in summary.problems)
            out.print(f"--allow-small: published although these checks failed: {failed}.")
        return EXIT_OK
    blocking = summary.blocking(allow_small)
    out.print(f"NOT published: {summary.location} is left as it was.")
    for problem in blocking:
        out.print(f"  - {problem.message}")
    if any(problem.small for problem in blocking) and all(problem.overridable for problem in blocking):
        out.print("Exit status 1; pass --allow-small to publish datasets below the minimums anyway.")
    else:
        out.print("Exit status 1.")
    return EXIT_NOT_READY


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a pod stopped, activeDeadlineSeconds) as an exception, so that ``finally`` blocks run:
    staged uploads are aborted rather than left in the bucket."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. SIGTERM raises ``SystemExit(143)`` (in the main thread)."""
    args = _parser().parse_args(argv)
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    run: CommandRunner = args.run
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        return run(args, out, err)
    except ConfigurationError as exc:
        err.print(f"batch: {exc}")
        return EXIT_CONFIGURATION
    except BatchError as exc:
        err.print(f"batch: {exc}")
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
