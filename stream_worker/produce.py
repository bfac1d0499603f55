"""``stream-worker produce``: put a captured clickstream into a Kinesis stream with PutRecords.

The capture's records go in file order, each with the capture's partition key (the player, else the
session; see :mod:`clickstream.capture`), in calls of at most 500 records and 5 MiB. Entries a call
rejects (throttled, internal failure) are retried alone with backoff and jitter; a call that fails as a
whole (throttling, 5xx, connection) is retried the same way. Delivery is at least once: a retried call
whose first answer was lost may put its records twice, and a retried entry may land after records
behind it (the stream worker does not depend on the order of records).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from clickstream.capture import CaptureRecord, read_capture
from stream_worker.errors import FatalConfigurationError, RetryableError
from stream_worker.retry import Backoff

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

log = logging.getLogger(__name__)

#: PutRecords limits: records per call, bytes per call and per record (data + partition key).
MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 5 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1024 * 1024
#: Attempts per entry (and per call) before giving up.
DEFAULT_MAX_ATTEMPTS: Final = 12

#: Per-entry error codes that may succeed when the entry is sent again.
RETRYABLE_ENTRY_CODES: Final = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "ServiceUnavailable", "KMSThrottlingException"}
)
#: Error codes of a whole call that may succeed when the call is made again.
RETRYABLE_CALL_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredTokenException",
    }
)


def entry_size(record: CaptureRecord) -> int:
    """What a record counts toward the PutRecords limits: its data and its partition key."""
    return len(record.data) + len(record.partition_key.encode("utf-8"))


def batches(
    records: Iterable[CaptureRecord],
    *,
    max_records: int = MAX_RECORDS_PER_CALL,
    max_bytes: int = MAX_BYTES_PER_CALL,
) -> Iterator[list[CaptureRecord]]:
    """``records`` in order, cut into lists of at most ``max_records`` entries and ``max_bytes`` bytes.

    A record bigger than ``max_bytes`` on its own comes as a list of one (the caller rejects it).
    """
    batch: list[CaptureRecord] = []
    size = 0
    for record in records:
        weight = entry_size(record)
        if batch and (len(batch) >= max_records or size + weight > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += weight
    if batch:
        yield batch


@dataclass
class ProduceSummary:
    """What happened to a capture's records; ``failed`` holds the records that are not in the stream."""

    stream: str
    records: int = 0
    put: int = 0
    bytes_put: int = 0
    calls: int = 0
    call_retries: int = 0
    entry_retries: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    @property
    def failed_records(self) -> int:
        return sum(self.failed.values())

    def fail(self, reason: str, n: int = 1) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + n

    def landed(self, record: CaptureRecord, shard_id: str, sequence_number: str) -> None:
        self.put += 1
        self.bytes_put += len(record.data)
        shard = self.shards.setdefault(shard_id, {"records": 0, "last_sequence_number": sequence_number})
        shard["records"] += 1
        if int(sequence_number) > int(shard["last_sequence_number"]):
            shard["last_sequence_number"] = sequence_number

    def to_json(self) -> dict[str, Any]:
        elapsed = self.elapsed_seconds
        return {
            "stream": self.stream,
            "records": self.records,
            "put": self.put,
            "bytes_put": self.bytes_put,
            "failed": self.failed_records,
            "failed_by_reason": dict(sorted(self.failed.items())),
            "put_records_calls": self.calls,
            "call_retries": self.call_retries,
            "entry_retries": self.entry_retries,
            "shards": {k: self.shards[k] for k in sorted(self.shards)},
            "elapsed_seconds": round(elapsed, 3),
            "records_per_second": round(self.put / elapsed, 1) if elapsed > 0 else None,
        }


class Pacer:
    """At most ``rate`` records per second, on average since the start (None: no limit)."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("--rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._started: float | None = None
        self._count = 0

    def due_in(self) -> float:
        """Seconds until the next record may go (0 when it may go now)."""
        if self.rate is None:
            return 0.0
        now = self._clock()
        if self._started is None:
            self._started = now
        return max(0.0, self._started + self._count / self.rate - now)

    def take(self) -> None:
        """Count one record as gone."""
        if self._started is None:
            self._started = self._clock()
        self._count += 1

    def wait(self) -> None:
        delay = self.due_in()
        if delay > 0:
            self._sleep(delay)


def paced_batches(
    records: Iterable[CaptureRecord],
    pacer: Pacer,
    *,
    max_records: int = MAX_RECORDS_PER_CALL,
    max_bytes: int = MAX_BYTES_PER_CALL,
) -> Iterator[list[CaptureRecord]]:
    """Like :func:`batches`, but a batch also ends when the next record is not due yet.

    Without a rate every batch is full; at a low rate a call carries what became due since the last.
    """
    if pacer.rate is None:
        yield from batches(records, max_records=max_records, max_bytes=max_bytes)
        return
    batch: list[CaptureRecord] = []
    size = 0
    for record in records:
        weight = entry_size(record)
        full = batch and (len(batch) >= max_records or size + weight > max_bytes)
        if batch and (full or pacer.due_in() > 0):
            yield batch
            batch, size = [], 0
        pacer.wait()
        pacer.take()
        batch.append(record)
        size += weight
    if batch:
        yield batch


def _error_code(error: ClientError) -> tuple[str, int]:
    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class PutRecordsSender:
    """Puts lists of records into one stream; retries what failed; counts into a :class:`ProduceSummary`.

    :meth:`put` returns once every record of the list is in the stream or given up on (counted in
    ``summary.failed`` by reason). It raises FatalConfigurationError when the stream cannot be written
    at all (unknown stream, access denied, no credentials) and RetryableError when a call still fails
    as a whole after ``max_attempts``.
    """

    def __init__(
        self,
        client: KinesisClient | Any,
        stream: str,
        summary: ProduceSummary,
        *,
        backoff: Backoff | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client
        self._stream = stream
        self.summary = summary
        self._backoff = backoff or Backoff(base=0.1, cap=5.0)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._max_record_bytes = max_record_bytes

    def put(self, records: list[CaptureRecord]) -> None:
        self.summary.records += len(records)
        pending = [r for r in records if entry_size(r) <= self._max_record_bytes]
        too_large = len(records) - len(pending)
        if too_large:
            self.summary.fail("too_large", too_large)
            log.warning("records over the 1 MiB Kinesis limit are not put", extra={"records": too_large})
        attempt = 1
        while pending:
            result = self._call(pending)
            retry: list[CaptureRecord] = []
            for record, entry in zip(pending, result["Records"], strict=True):
                code = entry.get("ErrorCode")
                if not code:
                    self.summary.landed(record, str(entry["ShardId"]), str(entry["SequenceNumber"]))
                elif code in RETRYABLE_ENTRY_CODES and attempt < self._max_attempts:
                    retry.append(record)
                else:
                    self.summary.fail(str(code))
                    log.error(
                        "record not put",
                        extra={"code": code, "error": entry.get("ErrorMessage"), "line": record.line},
                    )
            if retry:
                self.summary.entry_retries += len(retry)
                self._sleep(self._backoff.delay(attempt))
                attempt += 1
            pending = retry

    def _call(self, records: list[CaptureRecord]) -> dict[str, Any]:
        entries: list[Any] = [{"Data": r.data, "PartitionKey": r.partition_key} for r in records]
        attempt = 1
        while True:
            self.summary.calls += 1
            try:
                answer = self._client.put_records(StreamName=self._stream, Records=entries)
                return cast(dict[str, Any], answer)
            except NoCredentialsError as exc:
                raise FatalConfigurationError(f"no AWS credentials to write to stream {self._stream}") from exc
            except ClientError as exc:
                code, status = _error_code(exc)
                if not (code in RETRYABLE_CALL_CODES or status == 429 or status >= 500):
                    raise FatalConfigurationError(f"PutRecords to stream {self._stream} failed: {code}: {exc}") from exc
                reason = code
            except BotoCoreError as exc:  # connection refused or reset, timeouts
                reason = type(exc).__name__
            if attempt >= self._max_attempts:
                raise RetryableError(
                    f"PutRecords to stream {self._stream} still failing after {attempt} attempts ({reason})"
                )
            self.summary.call_retries += 1
            delay = self._backoff.delay(attempt)
            log.warning("PutRecords failed; retrying", extra={"reason": reason, "attempt": attempt, "delay": delay})
            self._sleep(delay)
            attempt += 1


def kinesis_client(region: str | None) -> KinesisClient:
    """A Kinesis client from the SDK's configuration (``AWS_ENDPOINT_URL_KINESIS``...); our retries only."""
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30, tcp_keepalive=True)
    session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    try:
        return session.client("kinesis", config=config)
    except NoRegionError as exc:
        raise FatalConfigurationError(
            "no AWS region: set STREAM_WORKER_REGION, AWS_REGION or AWS_DEFAULT_REGION"
        ) from exc


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]produce[/]"),
        BarColumn(),
        TextColumn("{task.completed:,} records put"),
        TextColumn("{task.fields[failed]:,} failed"),
        TextColumn("{task.fields[retries]:,} retries"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def produce(
    path: Path,
    stream: str,
    *,
    client: KinesisClient | Any,
    rate: float | None = None,
    progress: bool | None = None,
    sender_options: dict[str, Any] | None = None,
) -> ProduceSummary:
    """Put every record of the capture at ``path`` into ``stream``; returns the summary.

    Raises FatalConfigurationError (stream missing, access denied), RetryableError (the stream kept
    failing), or CaptureError/OSError (the file is unreadable).
    """
    summary = ProduceSummary(stream=stream)
    sender = PutRecordsSender(client, stream, summary, **(sender_options or {}))
    pacer = Pacer(rate)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress(show)
    started = time.monotonic()
    task = None
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("produce", total=None, failed=0, retries=0)
        for batch in paced_batches(read_capture(path), pacer):
            sender.put(batch)
            if bar is not None and task is not None:
                bar.update(
                    task,
                    completed=summary.put,
                    failed=summary.failed_records,
                    retries=summary.entry_retries + summary.call_retries,
                )
    finally:
        if bar is not None:
            bar.stop()
        summary.elapsed_seconds = time.monotonic() - started
    return summary


def write_summary(summary: ProduceSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
