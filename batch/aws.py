"""boto3 clients. Endpoints, region and credentials come from the SDK's own configuration
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, the credential chain)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from batch.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NO_REGION = "no AWS region: set BATCH_REGION, AWS_REGION or AWS_DEFAULT_REGION"


def s3_client(region: str | None) -> S3Client:
    """An S3 client with standard retries (a part upload is retried as a whole)."""
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    try:
        return session.client("s3", config=config)
    except NoRegionError as exc:
        raise ConfigurationError(_NO_REGION) from exc
