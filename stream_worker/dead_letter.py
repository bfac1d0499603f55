"""The dead-letter store: bad input, with the reason and the original bytes, as JSON lines.

``on_written`` is called only after an entry is durably stored (fsync'ed file, or the S3 object
written); only then is the record's unit done and may the checkpoint pass it. A failing store
(S3 down) is retried with backoff and holds the checkpoint back; it loses nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from stream_worker.retry import Backoff

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

Written = Callable[[], None]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undeliverable record or event."""

    reason: str
    detail: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes
    time: float
    position: int | None = None
    #: The normalized event that Personalize rejected, as JSON (for ``rejected`` entries).
    event: str | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds"),
            "reason": self.reason,
            "detail": self.detail,
            "shardId": self.shard_id,
            "sequenceNumber": self.sequence_number,
            "subSequenceNumber": self.sub_sequence_number,
            "position": self.position,
            "partitionKey": self.partition_key,
            "data": base64.b64encode(self.data).decode("ascii"),
        }
        if self.event is not None:
            body["event"] = self.event
        return json.dumps(body, separators=(",", ":"))


class DeadLetterStore(ABC):
    """Where bad input goes. ``write`` may return before the entry is stored; ``on_written`` tells."""

    @abstractmethod
    def write(self, entry: DeadLetter, on_written: Written) -> None: ...

    @abstractmethod
    def flush(self) -> None:
        """Ask for buffered entries to be written now (does not wait)."""

    @abstractmethod
    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (within ``timeout``) and release resources."""


class LocalDeadLetterStore(DeadLetterStore):
    """Appends to ``<folder>/<shard>-<start time>-<pid>.jsonl``; every write is fsync'ed."""

    def __init__(self, folder: Path, shard_id: str) -> None:
        self.folder = folder
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path = folder / f"{_safe(shard_id)}-{stamp}-{os.getpid()}.jsonl"
        self._lock = threading.Lock()
        self._file: Any = None

    def write(self, entry: DeadLetter, on_written: Written) -> None:
        line = entry.to_json() + "\n"
        with self._lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        on_written()

    def flush(self) -> None:
        """Every write is already durable."""

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class S3DeadLetterStore(DeadLetterStore):
    """Batches entries into objects ``<prefix>/YYYY/MM/DD/HH/<shard>-<pid>-<ms>-<n>.jsonl``.

    An object is written when ``batch_size`` entries are waiting or the oldest has waited
    ``max_age`` seconds, by a background thread that retries failures with backoff.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        shard_id: str,
        *,
        batch_size: int = 500,
        max_age: float = 2.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._shard = _safe(shard_id)
        self._batch_size = batch_size
        self._max_age = max_age
        self._backoff = backoff or Backoff(0.1, 10.0)
        self._cond = threading.Condition()
        self._buffer: list[tuple[DeadLetter, Written]] = []
        self._oldest = 0.0
        self._flush_now = False
        self._closing = False
        self._objects = 0
        self._thread = threading.Thread(target=self._run, name="dead-letters-s3", daemon=True)
        self._thread.start()

    def write(self, entry: DeadLetter, on_written: Written) -> None:
        with self._cond:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append((entry, on_written))
            if len(self._buffer) >= self._batch_size:
                self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._flush_now = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[tuple[DeadLetter, Written]] | None:
        with self._cond:
            while True:
                if self._buffer:
                    age = time.monotonic() - self._oldest
                    if self._flush_now or len(self._buffer) >= self._batch_size or age >= self._max_age:
                        batch = self._buffer[: self._batch_size]
                        del self._buffer[: self._batch_size]
                        self._oldest = time.monotonic()
                        if not self._buffer:
                            self._flush_now = False
                        return batch
                    self._cond.wait(self._max_age - age)
                elif self._closing:
                    return None
                else:
                    self._flush_now = False
                    self._cond.wait(1.0)

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            body = "".join(entry.to_json() + "\n" for entry, _ in batch).encode("utf-8")
            attempt = 0
            while True:
                try:
                    self._client.put_object(
                        Bucket=self.bucket, Key=self._key(), Body=body, ContentType="application/x-ndjson"
                    )
                    break
                except Exception as exc:
                    attempt += 1
                    log.warning(
                        "dead-letter write failed; retrying",
                        extra={"bucket": self.bucket, "attempt": attempt, "error": repr(exc)[:300]},
                    )
                    with self._cond:
                        if self._closing and attempt >= 3:
                            log.error("dead-letter entries not written at shutdown", extra={"n": len(batch)})
                            return
                    time.sleep(self._backoff.delay(attempt))
            for _, on_written in batch:
                on_written()

    def _key(self) -> str:
        now = datetime.now(UTC)
        self._objects += 1
        name = f"{self._shard}-{os.getpid()}-{int(now.timestamp() * 1000)}-{self._objects}.jsonl"
        parts = [self.prefix] if self.prefix else []
        return "/".join([*parts, now.strftime("%Y/%m/%d/%H"), name])


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:200] or "unknown"


def open_dead_letter_store(
    url: str,
    shard_id: str,
    s3_client: Callable[[], S3Client],
    *,
    batch_size: int = 500,
    max_age: float = 2.0,
) -> DeadLetterStore:
    """``s3://bucket/prefix`` -> S3 objects; anything else is a local folder."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"dead-letter url {url!r} has no bucket")
        return S3DeadLetterStore(
            s3_client(), parsed.netloc, parsed.path, shard_id, batch_size=batch_size, max_age=max_age
        )
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"dead-letter url {url!r}: use s3://bucket/prefix or a local folder")
    return LocalDeadLetterStore(Path(parsed.path if parsed.scheme == "file" else url), shard_id)
