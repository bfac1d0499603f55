"""S3 access for dataset import jobs and batch inference jobs (boto3, blocking: call from a thread).

The endpoint is ``endpoint_url`` when given (``--s3-endpoint-url``), else whatever the SDK's own
configuration says (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, profiles), else real S3. With a custom
endpoint, path-style addressing is used and, when the credential chain finds nothing, the dummy
credentials every local stand-in accepts.

Every failure surfaces as :class:`S3AccessError` with a message fit for a job's ``failureReason``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger("devstack.personalize.s3io")

#: Objects larger than this are refused (a local emulator reads them into memory).
MAX_OBJECT_BYTES: Final = 512 * 1024 * 1024
_MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class S3AccessError(Exception):
    """Reading or writing S3 failed; the message says what and where."""


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/key``; ``key`` may be empty or end with ``/`` (a folder)."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Parse ``url``; raise ``ValueError`` unless it is ``s3://bucket[/key]``."""
        if not url.startswith("s3://"):
            raise ValueError(f"{url!r} is not an S3 URL (s3://bucket/key)")
        bucket, _, key = url[5:].partition("/")
        if not bucket:
            raise ValueError(f"{url!r} names no bucket")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Url:
        """The object ``name`` inside this folder (a ``/`` is added between them when missing)."""
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Url(self.bucket, prefix + name)


class S3Gateway:
    """Reads and writes objects; one boto3 client, created on first use, shared by worker threads."""

    def __init__(self, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        self.endpoint_url = endpoint_url or None
        self.region = region
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    @property
    def configured_endpoint(self) -> str | None:
        """The endpoint in use: the explicit one, else the SDK's environment variables (for display)."""
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def client(self) -> S3Client:
        """The boto3 S3 client (created once)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> S3Client:
        session = boto3.session.Session(region_name=self.region)
        options: dict[str, Any] = {}
        custom = self.configured_endpoint is not None
        if custom and session.get_credentials() is None:
            options.update(aws_access_key_id="test", aws_secret_access_key="test")  # noqa: S106 (local stand-ins)
        config = Config(
            retries={"total_max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if custom else None,
            connect_timeout=5,
            read_timeout=60,
        )
        client: S3Client = session.client("s3", endpoint_url=self.endpoint_url, config=config, **options)
        return client

    def read(self, url: str) -> list[tuple[str, bytes]]:
        """The object at ``url``, or every object under it when it is a folder: [(s3 url, body), ...].

        A key ending with ``/`` is a folder; a key naming no object is tried as a folder too.
        """
        location = self._parse(url)
        client = self.client()
        try:
            if location.key and not location.key.endswith("/"):
                try:
                    return [(str(location), self._get(client, location))]
                except ClientError as exc:
                    if _code(exc) not in _MISSING_CODES:
                        raise
                location = S3Url(location.bucket, location.key + "/")
            objects: list[tuple[str, bytes]] = []
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.endswith("/") or entry.get("Size", 0) == 0:
                        continue
                    objects.append((f"s3://{location.bucket}/{key}", self._get(client, S3Url(location.bucket, key))))
        except ClientError as exc:
            raise S3AccessError(f"cannot read {url}: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise S3AccessError(f"cannot read {url}: {exc}") from None
        if not objects:
            raise S3AccessError(f"cannot read {url}: no such object, and no objects under it")
        return sorted(objects)

    def write(self, url: str, body: bytes, content_type: str = "application/json") -> None:
        """Put ``body`` at ``url``."""
        location = self._parse(url)
        try:
            self.client().put_object(Bucket=location.bucket, Key=location.key, Body=body, ContentType=content_type)
        except ClientError as exc:
            raise S3AccessError(f"cannot write {url}: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise S3AccessError(f"cannot write {url}: {exc}") from None

    @staticmethod
    def _parse(url: str) -> S3Url:
        try:
            return S3Url.parse(url)
        except ValueError as exc:
            raise S3AccessError(str(exc)) from None

    @staticmethod
    def _get(client: S3Client, location: S3Url) -> bytes:
        answer = client.get_object(Bucket=location.bucket, Key=location.key)
        if answer.get("ContentLength", 0) > MAX_OBJECT_BYTES:
            raise S3AccessError(f"{location} is larger than {MAX_OBJECT_BYTES} bytes")
        return answer["Body"].read()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "error")
    message = error.get("Message") or ""
    if code == "NoSuchBucket":
        return f"the bucket does not exist ({code})"
    if code in _MISSING_CODES:
        return f"no such object ({code})"
    return f"{code}: {message}".rstrip(": ")
