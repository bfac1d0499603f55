"""``batch``: the batch pipeline's command line.

``batch datasets`` reads items, users and interactions from the platform database (any SQLAlchemy URL,
``BATCH_DATABASE_URL``, with the SQL of ``BATCH_QUERIES_FILE``), normalizes interactions as the stream
does, and writes the Personalize dataset CSVs, their schemas, the lobby's ``games.json`` and a
manifest to ``s3://$BATCH_S3_BUCKET/$BATCH_S3_PREFIX/`` or to a folder (``--out``). It then checks the
dataset minimums. Exit status: 0 done and ready for training, 1 the minimums are not met (unless
``--allow-small``), 2 a wrong setting, argument, queries or mapping file, 3 the database or the output
failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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
        help="write the Personalize datasets, schemas and games.json; check the training minimums",
        description="Write the Personalize datasets, their schemas and games.json, then check the minimums.",
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
        "--allow-small", action="store_true", help="exit 0 even when the datasets are below the training minimums"
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
                source, sink, queries, mapping, dedup_memory=settings.dedup_memory, progress=progress
            )
            summary = builder.run()
    _report(summary, out)
    if summary.minimums.ok:
        return EXIT_OK
    if args.allow_small:
        out.print("--allow-small: the datasets are written anyway; training on them will fail.")
        return EXIT_OK
    out.print("Exit status 1: pass --allow-small to accept datasets below the minimums.")
    return EXIT_NOT_READY


def _report(summary: DatasetsSummary, out: Console) -> None:
    for line in summary.lines():
        out.print(line)
    out.print()
    for line in summary.minimums.lines():
        out.print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    run: CommandRunner = args.run
    try:
        return run(args, out, err)
    except ConfigurationError as exc:
        err.print(f"batch: {exc}")
        return EXIT_CONFIGURATION
    except BatchError as exc:
        err.print(f"batch: {exc}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
