"""Create what the demo needs, through the edge, the way a user's own code would. Idempotent."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.processes import wait_until

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("devstack.provision")


class ProvisioningError(RuntimeError):
    """A resource could not be created or did not become ready."""


@dataclass(frozen=True)
class Resources:
    stream_name: str
    shards: int
    buckets: tuple[str, ...]
    table_name: str
    tracking_id: str | None


@dataclass(frozen=True)
class Target:
    """Where and as whom to create them."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_stream(target: Target, name: str, shards: int, timeout: float) -> None:
    kinesis: KinesisClient = target.client("kinesis")
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        log.info("creating stream", extra={"stream": name, "shards": shards})
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
        log.info("stream exists", extra={"stream": name})

    def active() -> dict[str, Any] | None:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return dict(summary) if summary["StreamStatus"] == "ACTIVE" else None

    summary = wait_until(active, timeout=timeout, what=f"stream {name} to become ACTIVE")
    if summary.get("OpenShardCount") != shards:
        log.warning(
            "existing stream has another shard count",
            extra={"stream": name, "open_shards": summary.get("OpenShardCount"), "wanted": shards},
        )


def ensure_bucket(target: Target, name: str) -> None:
    s3: S3Client = target.client("s3")
    try:
        if target.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": target.region},  # type: ignore[typeddict-item]
            )
        log.info("bucket created", extra={"bucket": name})
    except ClientError as exc:
        if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        log.info("bucket exists", extra={"bucket": name})


def ensure_table(target: Target, name: str, key: str, timeout: float) -> None:
    dynamodb: DynamoDBClient = target.client("dynamodb")
    try:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("table created", extra={"table": name})
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
        log.info("table exists", extra={"table": name})
    wait_until(
        lambda: dynamodb.describe_table(TableName=name)["Table"].get("TableStatus") == "ACTIVE",
        timeout=timeout,
        what=f"table {name} to become ACTIVE",
    )


def ensure_tracker(target: Target, tracking_id: str, timeout: float) -> None:
    """The emulator's tracker, created with ``POST /_emulator/trackers`` unless it exists already.

    The edge routes ``/_emulator/`` to the emulator. (Our launcher also passes ``--tracker``, so the
    tracker survives the emulator's ``/_emulator/reset``; this covers an emulator started elsewhere.)
    """
    base = f"{target.endpoint_url}/_emulator/trackers"
    status, _ = _http_json("GET", f"{base}/{urllib.parse.quote(tracking_id, safe='')}", None, timeout)
    if status == 200:
        log.info("tracker exists", extra={"tracking_id": tracking_id})
        return
    status, detail = _http_json("POST", base, {"trackingId": tracking_id}, timeout)
    if status not in (200, 201):
        raise ProvisioningError(f"creating tracker {tracking_id} failed: HTTP {status} {detail}")
    log.info("tracker created", extra={"tracking_id": tracking_id})


def _http_json(method: str, url: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - our own http:// endpoint
        url, data=data, headers={"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read().decode("utf-8", errors="replace")[:500]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")[:500]


def provision(target: Target, resources: Resources, *, timeout: float = 60.0) -> None:
    try:
        ensure_stream(target, resources.stream_name, resources.shards, timeout)
        for bucket in resources.buckets:
            ensure_bucket(target, bucket)
        ensure_table(target, resources.table_name, "gameId", timeout)
        if resources.tracking_id:
            ensure_tracker(target, resources.tracking_id, timeout)
    except (ClientError, OSError) as exc:
        raise ProvisioningError(f"provisioning through {target.endpoint_url} failed: {exc}") from exc
