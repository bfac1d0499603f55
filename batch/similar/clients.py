"""boto3 clients of ``batch similar``; endpoints, region and credentials come from the SDK's own configuration
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_REGION``, the credential chain)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from batch.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_personalize import PersonalizeClient

_NO_REGION = "no AWS region: set BATCH_REGION, AWS_REGION or AWS_DEFAULT_REGION"


def _session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)


def dynamodb_client(region: str | None, *, concurrency: int) -> DynamoDBClient:
    """A DynamoDB client with a connection for each writer thread and standard retries of whole requests."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=20,
        max_pool_connections=max(10, concurrency + 2),
    )
    try:
        return _session(region).client("dynamodb", config=config)
    except NoRegionError as exc:
        raise ConfigurationError(_NO_REGION) from exc


def personalize_client(region: str | None) -> PersonalizeClient:
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    try:
        return _session(region).client("personalize", config=config)
    except NoRegionError as exc:
        raise ConfigurationError(_NO_REGION) from exc
