"""``batch similar run`` and ``batch similar load``: the CLI of SIMS batch inference and the loader.

``run`` writes the input lines from the Items dataset of ``batch datasets``, starts the batch inference
job with the SIMS solution version (``--solution-version-arn``, else the newest ACTIVE version of
``--solution-name``), waits for it, and loads its output. Run again with the ``--job-name`` of a job that
exists (a run interrupted after starting it), it starts nothing: it waits for that job and loads its
output. ``load`` loads an output already there. Exit status: 0 done (rows of a newer model are kept, and
said so), 2 a wrong setting or argument (or a job of that name that is another job), 3 the job failed
(its ``failureReason`` is printed), the deadline passed, or DynamoDB refused the items, 130 interrupted
(the job goes on).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from batch.aws import dynamodb_client, personalize_client, s3_client
from batch.errors import ConfigurationError
from batch.settings import BatchSettings, load_settings
from batch.similar.backoff import Backoff
from batch.similar.inference import (
    INPUT_NAME,
    ItemIds,
    JobRequest,
    JobWaiter,
    SolutionVersionRef,
    StatusCallback,
    describe_version,
    find_job,
    latest_active_version,
    model_of_output,
    reuse_job,
    start_job,
    write_input,
)
from batch.similar.loader import LoaderOptions, LoadProgress, LoadSummary, SimilarGamesLoader
from batch.similar.model_version import ModelVersion
from batch.similar.output import BatchOutput, S3Location
from batch.similar.table import SimilarGamesTable
from batch.sinks import S3Sink

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXIT_INTERRUPTED = 130


def add_similar_commands(commands: Subcommands) -> None:
    """Add ``similar run`` and ``similar load`` to the ``batch`` parser."""
    similar = commands.add_parser(
        "similar",
        help="SIMS batch inference for every game, loaded into DynamoDB",
        description="SIMS batch inference for every game, loaded into the similar-games DynamoDB table.",
    )
    steps = similar.add_subparsers(dest="similar_command", required=True)

    run = steps.add_parser("run", help="write the input, run the batch inference job, wait, load its output")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--solution-version-arn", default=None, help="the SIMS solution version to use")
    which.add_argument(
        "--solution-name", default=None, help="use its newest ACTIVE version (default: $BATCH_SIMILAR_SOLUTION_NAME)"
    )
    run.add_argument("--num-results", type=int, default=None, help="similar games per game (default 25)")
    run.add_argument("--role-arn", default=None, help="role Personalize assumes (default: $BATCH_PERSONALIZE_ROLE_ARN)")
    run.add_argument("--bucket", default=None, help="S3 bucket of datasets, input and output ($BATCH_S3_BUCKET)")
    run.add_argument("--datasets-prefix", default=None, help="where `batch datasets` wrote ($BATCH_S3_PREFIX)")
    run.add_argument("--prefix", default=None, help="key prefix of the job's input/output ($BATCH_SIMILAR_S3_PREFIX)")
    run.add_argument(
        "--job-name",
        default=None,
        help="default: similar-<UTC time>; the name of a job that exists (an interrupted run's): wait for it and "
        "load its output",
    )
    run.add_argument("--timeout", type=float, default=None, help="seconds to wait for the job")
    _load_options(run)
    run.set_defaults(run=run_similar)

    load = steps.add_parser("load", help="load a batch inference output (s3://bucket/prefix-or-key) into DynamoDB")
    load.add_argument("location", help="s3://bucket/key of one output object, or the output folder")
    load.add_argument(
        "--model-version",
        default=None,
        help="SOURCE@ISO-TIME (default: the solution version of the job that wrote the output)",
    )
    _load_options(load)
    load.set_defaults(run=load_similar)


def _load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", default=None, help="DynamoDB table (default: $BATCH_SIMILAR_TABLE, similar-games)")
    parser.add_argument("--concurrency", type=int, default=None, help="BatchWriteItem requests in flight (default 4)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _settings(args: argparse.Namespace, **more: object) -> BatchSettings:
    return load_settings(similar_table=args.table, similar_concurrency=args.concurrency, **more)


@contextmanager
def _status(console: Console, what: str) -> Iterator[StatusCallback | None]:
    """The job's status and the time waited, live on a terminal."""
    if not console.is_terminal:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(what, total=None)

        def update(status: str, waited: float) -> None:
            bar.update(task, description=f"{what}: {status}")

        yield update


@contextmanager
def _load_progress(console: Console) -> Iterator[LoadProgress | None]:
    if not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("loading"),
        TextColumn("{task.completed:>10,.0f} answers"),
        TextColumn("{task.fields[written]:>10,} written"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("loading", total=None, written=0)

        def update(handled: int, written: int) -> None:
            bar.update(task, completed=handled, written=written)

        yield update


def load_output(
    settings: BatchSettings, s3: S3Client, location: S3Location, model: ModelVersion, err: Console
) -> LoadSummary:
    """Load the output at ``location`` as ``model``'s answers into the table of ``settings``."""
    output = BatchOutput(s3, location)
    table = SimilarGamesTable(
        dynamodb_client(settings.region, concurrency=settings.similar_concurrency), settings.similar_table, model
    )
    options = LoaderOptions(
        concurrency=settings.similar_concurrency,
        max_attempts=settings.similar_max_write_attempts,
        fence=settings.similar_fence_seconds,
        race_window=settings.similar_race_window_seconds,
    )
    err.print(f"loading {len(output.keys)} output file(s) at {location} into {settings.similar_table} as {model}")
    with _load_progress(err) as progress:
        loader = SimilarGamesLoader(table, options, progress=progress)
        return loader.load(output.answers, create_table=settings.similar_create_table)


def _report(summary: LoadSummary, args: argparse.Namespace, out: Console) -> None:
    if args.json:
        out.print_json(json.dumps(summary.to_json()))
        return
    for line in summary.lines():
        out.print(line, highlight=False)


def load_similar(args: argparse.Namespace, out: Console, err: Console) -> int:
    settings = _settings(args)
    try:
        location = S3Location.parse(args.location)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if args.model_version is not None:
        try:
            model = ModelVersion.parse(args.model_version)
        except ValueError as exc:
            raise ConfigurationError(f"--model-version: {exc}") from None
    else:
        model = model_of_output(personalize_client(settings.region), location)
    summary = load_output(settings, s3_client(settings.region), location, model, err)
    _report(summary, args, out)
    return 0


def run_similar(args: argparse.Namespace, out: Console, err: Console) -> int:
    settings = _settings(
        args,
        similar_solution_name=args.solution_name,
        similar_num_results=args.num_results,
        personalize_role_arn=args.role_arn,
        s3_bucket=args.bucket,
        s3_prefix=args.datasets_prefix,
        similar_s3_prefix=args.prefix,
        similar_job_timeout_seconds=args.timeout,
    )
    if settings.s3_bucket is None:
        raise ConfigurationError("no bucket for the batch inference input and output: set BATCH_S3_BUCKET (--bucket)")
    role_arn = settings.personalize_role_arn
    if not role_arn:
        raise ConfigurationError("no role for Personalize to read and write S3: set BATCH_PERSONALIZE_ROLE_ARN")
    personalize = personalize_client(settings.region)
    s3 = s3_client(settings.region)
    job_name = args.job_name or f"similar-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    # A run interrupted after starting its job, run again with --job-name: wait for that job and load its
    # output (as its solution version's answers, unless --solution-version-arn says which it must be).
    existing = find_job(personalize, job_name) if args.job_name else None
    version: SolutionVersionRef
    if args.solution_version_arn:
        version = describe_version(personalize, args.solution_version_arn)
    elif existing is not None:
        version = describe_version(personalize, str(existing["solutionVersionArn"]))
    else:
        version = latest_active_version(personalize, settings.similar_solution_name)
    folder = "/".join(part for part in (settings.similar_s3_prefix.strip("/"), job_name) if part)
    sink = S3Sink(s3, settings.s3_bucket, f"{folder}/input", part_size=settings.upload_part_bytes)
    output_path = f"s3://{settings.s3_bucket}/{folder}/output/"
    request = JobRequest(
        job_name=job_name,
        solution_version_arn=version.arn,
        role_arn=role_arn,
        input_path=sink.location(INPUT_NAME),
        output_path=output_path,
        num_results=settings.similar_num_results,
    )
    count: int | None = None
    if existing is not None:
        job_arn = reuse_job(existing, request)  # its input stays as the job read it
        err.print(f"batch inference job {job_name} exists ({existing.get('status')}): waiting for it, not starting one")
    else:
        items = ItemIds(s3, settings.s3_bucket, settings.s3_prefix)
        count = write_input(sink, items)
        if count == 0:
            raise ConfigurationError(f"no games in s3://{items.bucket}/{items.key('items.csv')}: nothing to infer")
        err.print(f"{count:,} games from s3://{items.bucket}/{items.key('items.csv')} -> {sink.location(INPUT_NAME)}")
        job_arn = start_job(personalize, request)
    err.print(f"batch inference job {job_arn} (solution version {version.arn})")
    backoff = Backoff(
        base=settings.similar_poll_initial_seconds,
        cap=max(settings.similar_poll_max_seconds, settings.similar_poll_initial_seconds),
        floor=min(0.5, settings.similar_poll_initial_seconds),
    )
    try:
        with _status(err, f"job {job_name}") as on_status:
            timeout = settings.similar_job_timeout_seconds
            JobWaiter(personalize, backoff=backoff, timeout=timeout, on_status=on_status).wait(job_arn)
    except KeyboardInterrupt:
        err.print(
            f"interrupted: the batch inference job goes on in Personalize; `batch similar run --job-name {job_name}`"
            " (with the same options) waits for it and loads its output"
        )
        return EXIT_INTERRUPTED
    err.print(f"job {job_name} is ACTIVE; output at {output_path}")
    summary = load_output(settings, s3, S3Location.parse(output_path), version.model, err)
    if not args.json:
        out.print(f"batch inference job: {job_arn}", highlight=False)
        if count is not None:
            out.print(f"input games:      {count:,}", highlight=False)
    _report(summary, args, out)
    return 0
