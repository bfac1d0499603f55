"""``batch personalize apply`` and ``batch personalize train``: the command line.

``apply [--config FILE] [--reimport] [--outputs FILE]`` makes the config's resources exist (importing
each dataset again when ``batch datasets`` published since its last import, as its ``manifest.json`` in S3
says; every dataset with ``--reimport``) and prints
the tracking id, the campaign ARNs, the filter ARN and the solution versions; ``train [--config FILE]
[--solution KEY ...] [--update] [--outputs FILE]`` retrains and switches the campaigns over. Both show
progress on a terminal and end with a summary table. Exit status: 0 done, 2 a wrong setting or config
(or Personalize refused one), 3 a resource failed (its ``failureReason`` is shown) or a call failed,
130 interrupted (what was started goes on in Personalize; running the command again resumes).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from batch.aws import personalize_client, s3_client
from batch.datasets import MANIFEST_JSON
from batch.errors import BatchError, ConfigurationError
from batch.personalize.calls import error_code
from batch.personalize.config import PersonalizeConfig
from batch.personalize.errors import PersonalizeError
from batch.personalize.outputs import Outputs
from batch.personalize.plan import ConfigApplier, DatasetLocation, Ledger
from batch.personalize.train import CampaignTrainer, read_outputs
from batch.personalize.waiter import Backoff, Deadline, Observed, Pending, StatusWaiter
from batch.settings import BatchSettings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXIT_OK = 0
EXIT_INTERRUPTED = 130


def add_personalize_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``personalize apply`` and ``personalize train`` to the ``batch`` parser."""
    personalize = commands.add_parser(
        "personalize",
        help="create or refresh the Amazon Personalize resources (apply), retrain and update campaigns (train)",
        description="The Amazon Personalize resources of the lobby, from a declarative config.",
    )
    actions = personalize.add_subparsers(dest="personalize_command", required=True)

    apply = actions.add_parser(
        "apply",
        help="make every resource of the config exist (idempotent; resumes an interrupted run)",
        description="Find each resource of the config by name, create what is missing, wait until ACTIVE.",
    )
    _common(apply)
    apply.add_argument("--bucket", default=None, help="S3 bucket of the datasets (default: $BATCH_S3_BUCKET)")
    apply.add_argument("--prefix", default=None, help="S3 key prefix of the datasets (default: $BATCH_S3_PREFIX)")
    apply.add_argument(
        "--reimport",
        action="store_true",
        help="import every dataset again, even when its files have not changed since its last ACTIVE import",
    )
    apply.set_defaults(run=run_apply)

    train = actions.add_parser(
        "train",
        help="create new solution versions and point the campaigns at them",
        description="Train new solution versions, wait, then UpdateCampaign each campaign to its new version.",
    )
    _common(train)
    train.add_argument(
        "--solution",
        action="append",
        default=[],
        metavar="KEY",
        help="a solution key of the config (repeatable; default: every solution a campaign serves)",
    )
    train.add_argument(
        "--update", action="store_true", help="trainingMode UPDATE where the recipe allows it (else FULL)"
    )
    train.set_defaults(run=run_train)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="the config (default: $BATCH_PERSONALIZE_CONFIG)")
    parser.add_argument("--outputs", type=Path, default=None, help="write the ARNs and tracking id here as JSON")


# ------------------------------------------------------------------------------------------ display


class ConsoleReporter:
    """Actions as lines on stderr; while waiting, a spinner per resource with its status (terminal only)."""

    def __init__(self, console: Console, progress: Progress | None) -> None:
        self.console = progress.console if progress is not None else console
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.seen: dict[str, str] = {}

    def action(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def poll(self, pending: Pending, observed: Observed) -> None:
        if self.progress is not None:
            if pending.arn not in self.tasks:
                self.tasks[pending.arn] = self.progress.add_task(pending.label, total=1)
            self.progress.update(
                self.tasks[pending.arn],
                description=f"{pending.label}: {observed.status}",
                completed=1 if observed.settled else 0,
            )
        elif self.seen.get(pending.arn) != observed.status and observed.settled:
            self.console.print(f"{pending.label}: {observed.status}", highlight=False)
        self.seen[pending.arn] = observed.status


@contextmanager
def _reporter(err: Console) -> Iterator[ConsoleReporter]:
    if not err.is_terminal:
        yield ConsoleReporter(err, None)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        yield ConsoleReporter(err, progress)


def _summary(ledger: Ledger, out: Console, title: str) -> None:
    if not ledger.rows:
        return
    table = Table(title=title, title_justify="left")
    for column in ("resource", "name", "outcome", "status", "note"):
        table.add_column(column)
    for row in ledger.rows:
        table.add_row(row.kind, row.name, row.outcome, row.status, row.note)
    out.print(table)
    counts = ", ".join(f"{outcome} {ledger.count(outcome)}" for outcome in ("existed", "created", "waited", "updated"))
    out.print(counts)


def _print_outputs(outputs: Outputs, out: Console) -> None:
    out.print()
    for line in outputs.lines():
        out.print(line, highlight=False)


# ------------------------------------------------------------------------------------------ commands


def _settings(args: argparse.Namespace) -> BatchSettings:
    return load_settings(
        personalize_config=args.config,
        s3_bucket=getattr(args, "bucket", None),
        s3_prefix=getattr(args, "prefix", None),
    )


def _waiter(settings: BatchSettings, reporter: ConsoleReporter) -> StatusWaiter:
    initial = settings.personalize_poll_initial_seconds
    try:
        backoff = Backoff(initial=initial, maximum=max(initial, settings.personalize_poll_max_seconds))
    except ValueError as exc:
        raise ConfigurationError(f"BATCH_PERSONALIZE_POLL_*_SECONDS: {exc}") from None
    return StatusWaiter(backoff, Deadline(settings.personalize_wait_timeout_seconds), on_poll=reporter.poll)


class S3Datasets:
    """What ``batch datasets`` wrote under the dataset location: the schemas, and when it last published."""

    def __init__(self, client: S3Client, location: DatasetLocation) -> None:
        self.client = client
        self.location = location

    def _key(self, file: str) -> str:
        return f"{self.location.prefix}/{file}" if self.location.prefix else file

    def read_text(self, file: str) -> str:
        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=self._key(file))["Body"].read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NoSuchBucket"):
                raise PersonalizeError(
                    f"no {self.location.url(file)}: run `batch datasets` first (or set BATCH_S3_BUCKET / "
                    "BATCH_S3_PREFIX to where it wrote)"
                ) from None
            raise PersonalizeError(f"reading {self.location.url(file)}: {error}") from None
        except BotoCoreError as error:
            raise PersonalizeError(f"reading {self.location.url(file)}: {error}") from None
        return body.decode("utf-8")

    def published(self) -> datetime | None:
        """When ``batch datasets`` last published a complete set: its ``manifest.json``'s time (one
        PutObject, written after every file); None when there is no manifest."""
        try:
            return self.client.head_object(Bucket=self.location.bucket, Key=self._key(MANIFEST_JSON))["LastModified"]
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                return None
            raise PersonalizeError(f"looking at {self.location.url(MANIFEST_JSON)}: {error}") from None
        except BotoCoreError as error:
            raise PersonalizeError(f"looking at {self.location.url(MANIFEST_JSON)}: {error}") from None


def run_apply(args: argparse.Namespace, out: Console, err: Console) -> int:
    settings = _settings(args)
    config = PersonalizeConfig.load(settings.personalize_config)
    if settings.s3_bucket is None:
        raise ConfigurationError(
            "no dataset location: set BATCH_S3_BUCKET (or --bucket) to where `batch datasets` wrote"
        )
    location = DatasetLocation(settings.s3_bucket, settings.s3_prefix)
    client = personalize_client(settings.region, adaptive=True)
    files = S3Datasets(s3_client(settings.region), location)
    err.print(f"applying {settings.personalize_config or 'the default config'} (datasets at {location.url('')})")
    with _reporter(err) as reporter:
        applier = ConfigApplier(
            client,
            config,
            location,
            files.read_text,
            _waiter(settings, reporter),
            role_arn=settings.personalize_role_arn,
            reimport=args.reimport,
            data_modified=files.published,
            reporter=reporter,
        )
        try:
            outputs = applier.apply()
        except KeyboardInterrupt:
            _summary(applier.ledger, out, "Personalize resources (interrupted)")
            err.print("interrupted: what was started goes on in Personalize; run apply again to resume")
            return EXIT_INTERRUPTED
        except BatchError:
            _summary(applier.ledger, out, "Personalize resources (failed)")
            raise
    _summary(applier.ledger, out, "Personalize resources")
    _print_outputs(outputs, out)
    if args.outputs is not None:
        outputs.write(args.outputs)
        out.print(f"outputs written to {args.outputs}", highlight=False)
    return EXIT_OK


def run_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    settings = _settings(args)
    config = PersonalizeConfig.load(settings.personalize_config)
    client = personalize_client(settings.region, adaptive=True)
    with _reporter(err) as reporter:
        trainer = CampaignTrainer(client, config, _waiter(settings, reporter), update=args.update, reporter=reporter)
        try:
            switches = trainer.train(args.solution)
        except KeyboardInterrupt:
            _summary(trainer.ledger, out, "Training (interrupted)")
            err.print("interrupted: training goes on in Personalize; the campaigns still serve their old versions")
            return EXIT_INTERRUPTED
        except BatchError:
            _summary(trainer.ledger, out, "Training (failed)")
            raise
    _summary(trainer.ledger, out, "Training")
    out.print()
    for switch in switches:
        out.print(f"campaign {switch.campaign}: {switch.old} -> {switch.new}", highlight=False)
    if not switches:
        out.print("no campaign changed version")
    if args.outputs is not None:
        read_outputs(client, config, settings.personalize_role_arn).write(args.outputs)
        out.print(f"outputs written to {args.outputs}", highlight=False)
    return EXIT_OK
