"""SIMS batch inference: the Items dataset's game ids in, a batch inference job, its output folder out.

``batch datasets`` wrote ``items.csv`` (header ``ITEM_ID,...``) and, last, ``manifest.json`` under its
prefix; the input here is one ``{"itemId": "..."}`` line per game of that file, streamed to S3. The job's
model version is the solution version's ARN and creation time (:class:`ModelVersion`), so the loader can
tell newer answers from older ones. Personalize has no waiters in botocore: :class:`JobWaiter` polls
DescribeBatchInferenceJob with exponential backoff, full jitter and a deadline.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

from botocore.exceptions import BotoCoreError, ClientError

from batch.errors import ConfigurationError, SourceError
from batch.similar.backoff import Backoff
from batch.similar.errors import DeadlineExceededError, InferenceJobFailedError
from batch.similar.model_version import ModelVersion
from batch.similar.output import S3Location
from batch.sinks import S3Sink

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient
    from mypy_boto3_s3 import S3Client

ITEMS_CSV: Final = "items.csv"
MANIFEST_JSON: Final = "manifest.json"
INPUT_NAME: Final = "items.jsonl"
ITEM_ID: Final = "ITEM_ID"
FAILED: Final = frozenset({"CREATE FAILED", "CREATE STOPPED"})
#: Called with (status, seconds waited so far).
StatusCallback = Callable[[str, float], None]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ItemIds:
    """The game ids of the Items dataset ``batch datasets`` wrote under ``s3://bucket/prefix/``, streamed."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __iter__(self) -> Iterator[str]:
        where = f"s3://{self.bucket}/{self.key('')}"
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(MANIFEST_JSON))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise SourceError(f"no {MANIFEST_JSON} at {where}: run `batch datasets` first (or it failed)") from None
            raise SourceError(f"cannot read {where}{MANIFEST_JSON}: {exc}") from exc
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.key(ITEMS_CSV))["Body"]
            raw = io.BufferedReader(cast(io.RawIOBase, body))
            with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
                reader = csv.reader(text)
                header = next(reader, [])
                if ITEM_ID not in header:
                    raise SourceError(f"{where}{ITEMS_CSV} has no {ITEM_ID} column (header {header})")
                column = header.index(ITEM_ID)
                for row in reader:
                    if len(row) > column and row[column]:
                        yield row[column]
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"cannot read {where}{ITEMS_CSV}: {exc}") from exc


def write_input(sink: S3Sink, item_ids: ItemIds) -> int:
    """Write one ``{"itemId": ...}`` line per game to ``INPUT_NAME`` in ``sink``; returns the number of lines."""
    count = 0
    with sink.open(INPUT_NAME, "application/x-ndjson") as output:
        for item_id in item_ids:
            output.stream.write(json.dumps({"itemId": item_id}).encode("utf-8") + b"\n")
            count += 1
    return count


@dataclass(frozen=True, slots=True)
class SolutionVersionRef:
    arn: str
    created: datetime

    @property
    def model(self) -> ModelVersion:
        return ModelVersion(self.created, self.arn)


def describe_version(client: PersonalizeClient, arn: str) -> SolutionVersionRef:
    try:
        version = client.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise ConfigurationError(f"solution version {arn} does not exist") from None
        raise
    if version.get("status") != "ACTIVE":
        raise ConfigurationError(f"solution version {arn} is {version.get('status')}, not ACTIVE")
    return SolutionVersionRef(arn, _utc(version["creationDateTime"]))


def latest_active_version(client: PersonalizeClient, solution_name: str) -> SolutionVersionRef:
    """The newest ACTIVE version of the solution named ``solution_name`` (in any dataset group)."""
    solutions = [
        entry
        for page in client.get_paginator("list_solutions").paginate()
        for entry in page.get("solutions", [])
        if entry.get("name") == solution_name
    ]
    if not solutions:
        raise ConfigurationError(
            f"no Personalize solution named {solution_name!r} (BATCH_SIMILAR_SOLUTION_NAME, --solution-name);"
            " run `batch personalize apply`, or give --solution-version-arn"
        )
    if len(solutions) > 1:
        raise ConfigurationError(f"{len(solutions)} solutions are named {solution_name!r}: give --solution-version-arn")
    solution_arn = solutions[0]["solutionArn"]
    versions = [
        entry
        for page in client.get_paginator("list_solution_versions").paginate(solutionArn=solution_arn)
        for entry in page.get("solutionVersions", [])
        if entry.get("status") == "ACTIVE"
    ]
    if not versions:
        raise ConfigurationError(f"solution {solution_arn} has no ACTIVE version yet: train it first")
    newest = max(versions, key=lambda entry: _utc(entry["creationDateTime"]))
    return SolutionVersionRef(newest["solutionVersionArn"], _utc(newest["creationDateTime"]))


def model_of_output(client: PersonalizeClient, location: S3Location) -> ModelVersion:
    """The model version of the batch inference job whose output folder holds ``location``.

    Raises ConfigurationError when no job wrote there (then give the model version explicitly).
    """
    target = str(location)
    jobs = [
        entry
        for page in client.get_paginator("list_batch_inference_jobs").paginate()
        for entry in page.get("batchInferenceJobs", [])
    ]
    jobs.sort(key=lambda entry: _utc(entry["creationDateTime"]), reverse=True)
    for entry in jobs:
        job = client.describe_batch_inference_job(batchInferenceJobArn=entry["batchInferenceJobArn"])[
            "batchInferenceJob"
        ]
        folder = job["jobOutput"]["s3DataDestination"]["path"].rstrip("/") + "/"
        if target.startswith(folder) or target.rstrip("/") + "/" == folder:
            return describe_version(client, job["solutionVersionArn"]).model
    raise ConfigurationError(
        f"no batch inference job wrote {target}: give the model version (--model-version SOURCE@ISO-TIME)"
    )


@dataclass(frozen=True, slots=True)
class JobRequest:
    job_name: str
    solution_version_arn: str
    role_arn: str
    input_path: str
    output_path: str
    num_results: int


def find_job(client: PersonalizeClient, job_name: str) -> dict[str, Any] | None:
    """The batch inference job named ``job_name`` (DescribeBatchInferenceJob), or None when there is none."""
    for page in client.get_paginator("list_batch_inference_jobs").paginate():
        for entry in page.get("batchInferenceJobs", []):
            if entry.get("jobName") == job_name:
                described = client.describe_batch_inference_job(batchInferenceJobArn=entry["batchInferenceJobArn"])
                return dict(described["batchInferenceJob"])
    return None


def reuse_job(job: dict[str, Any], request: JobRequest) -> str:
    """The ARN of ``job``, a job named ``request.job_name`` that exists already (started by a run that was
    interrupted), when it is the job ``request`` asks for: same solution version, input, output and number
    of results. Raises :class:`ConfigurationError` naming what differs otherwise."""

    def path(value: object) -> str:
        return str(value or "").rstrip("/")

    found = {
        "solution version": str(job.get("solutionVersionArn", "")),
        "input": path(job.get("jobInput", {}).get("s3DataSource", {}).get("path")),
        "output": path(job.get("jobOutput", {}).get("s3DataDestination", {}).get("path")),
    }
    wanted = {
        "solution version": request.solution_version_arn,
        "input": path(request.input_path),
        "output": path(request.output_path),
    }
    if job.get("numResults") is not None:
        found["number of results"] = str(job["numResults"])
        wanted["number of results"] = str(request.num_results)
    differences = [f"{what} {found[what]} (not {wanted[what]})" for what in found if found[what] != wanted[what]]
    if differences:
        raise ConfigurationError(
            f"a batch inference job named {request.job_name} exists already with another "
            f"{'; '.join(differences)}: give another --job-name, or the options of that job to wait for it "
            "and load its output"
        )
    return str(job["batchInferenceJobArn"])


def start_job(client: PersonalizeClient, request: JobRequest) -> str:
    """CreateBatchInferenceJob; returns its ARN. A job of this name that exists already (a run interrupted
    after starting it, run again with its ``--job-name``) is reused when it is the same job (see
    :func:`reuse_job`): its ARN is returned, to wait for it (at once if it has finished) and load its output."""
    try:
        return client.create_batch_inference_job(
            jobName=request.job_name,
            solutionVersionArn=request.solution_version_arn,
            roleArn=request.role_arn,
            numResults=request.num_results,
            jobInput={"s3DataSource": {"path": request.input_path}},
            jobOutput={"s3DataDestination": {"path": request.output_path}},
        )["batchInferenceJobArn"]
    except ClientError as exc:
        if _code(exc) == "ResourceAlreadyExistsException":
            existing = find_job(client, request.job_name)
            if existing is None:
                raise ConfigurationError(
                    f"a batch inference job named {request.job_name} exists already, yet it is not listed"
                ) from None
            return reuse_job(existing, request)
        if _code(exc) in ("InvalidInputException", "ResourceNotFoundException", "ResourceInUseException"):
            raise ConfigurationError(f"CreateBatchInferenceJob refused: {exc}") from None
        raise


class JobWaiter:
    """Polls DescribeBatchInferenceJob until ACTIVE; raises on a failed job or at the deadline."""

    def __init__(
        self,
        client: PersonalizeClient,
        *,
        backoff: Backoff,
        timeout: float,
        on_status: StatusCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.backoff = backoff
        self.timeout = timeout
        self.on_status = on_status
        self.sleep = sleep

    def wait(self, job_arn: str) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + self.timeout
        attempt = 0
        while True:
            try:
                job = dict(self._client.describe_batch_inference_job(batchInferenceJobArn=job_arn)["batchInferenceJob"])
            except (BotoCoreError, ClientError) as exc:  # standard retries are spent: keep polling to the deadline
                job = {"status": f"(describe failed: {exc})"}
            status = str(job.get("status"))
            if self.on_status is not None:
                self.on_status(status, time.monotonic() - started)
            if status == "ACTIVE":
                return job
            if status in FAILED:
                reason = job.get("failureReason")
                raise InferenceJobFailedError(job_arn, status, str(reason) if reason else None)
            attempt += 1
            now = time.monotonic()
            if now >= deadline:
                raise DeadlineExceededError(
                    f"batch inference job {job_arn} is still {status} after {self.timeout:g}s; it goes on:"
                    f" `batch similar run --job-name {job_arn.rsplit('/', 1)[-1]}` waits for it again and loads"
                    " its output (or load it later with `batch similar load`)"
                )
            self.sleep(min(self.backoff.delay(attempt), deadline - now))
