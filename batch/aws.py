"""boto3 clients of the batch. Endpoints, region and credentials come from the SDK's own configuration
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_REGION``, the credential chain); a missing
region is a :class:`ConfigurationError` that says how to set one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from batch.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_personalize import PersonalizeClient
    from mypy_boto3_s3 import S3Client

_NO_REGION = "no AWS region: set BATCH_REGION, AWS_REGION or AWS_DEFAULT_REGION"


def _client(service: str, region: str | None, config: Config) -> Any:
    session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    try:
        return session.client(service, config=config)  # type: ignore[call-overload]
    except NoRegionError as exc:
        raise ConfigurationError(_NO_REGION) from exc


def s3_client(region: str | None) -> S3Client:
    """An S3 client with standard retries (a part upload is retried as a whole)."""
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    client: S3Client = _client("s3", region, config)
    return client


def dynamodb_client(region: str | None, *, concurrency: int) -> DynamoDBClient:
    """A DynamoDB client with a connection for each writer thread and standard retries of whole requests."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=20,
        max_pool_connections=max(10, concurrency + 2),
    )
    client: DynamoDBClient = _client("dynamodb", region, config)
    return client


def personalize_client(region: str | None, *, adaptive: bool = False) -> PersonalizeClient:
    """A ``personalize`` client; ``adaptive`` retries slow down on throttling (apply and train make many calls)."""
    retries: dict[str, Any] = (
        {"mode": "adaptive", "max_attempts": 10} if adaptive else {"mode": "standard", "max_attempts": 5}
    )
    config = Config(retries=retries, connect_timeout=10 if adaptive else 5, read_timeout=60)  # type: ignore[arg-type]
    client: PersonalizeClient = _client("personalize", region, config)
    return client
