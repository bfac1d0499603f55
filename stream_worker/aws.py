"""boto3 clients. Endpoints, region and credentials come from the SDK's own configuration
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the credential chain); retries are ours."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from stream_worker.errors import FatalConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_personalize_events import PersonalizeEventsClient
    from mypy_boto3_s3 import S3Client


def personalize_events_client(region: str | None, *, max_connections: int, timeout: float) -> PersonalizeEventsClient:
    """A PutEvents client with botocore's retries off (the sender retries, adaptively)."""
    config = Config(
        retries={"total_max_attempts": 1},
        max_pool_connections=max_connections,
        connect_timeout=min(timeout, 5.0),
        read_timeout=timeout,
        tcp_keepalive=True,
    )
    try:
        return _session(region).client("personalize-events", config=config)
    except NoRegionError as exc:
        raise FatalConfigurationError(_NO_REGION) from exc


def s3_client(region: str | None) -> S3Client:
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    try:
        return _session(region).client("s3", config=config)
    except NoRegionError as exc:
        raise FatalConfigurationError(_NO_REGION) from exc


_NO_REGION = "no AWS region: set STREAM_WORKER_REGION, AWS_REGION or AWS_DEFAULT_REGION"


def _session(region: str | None) -> boto3.session.Session:
    """A session in ``region``, else $AWS_REGION (which botocore alone does not read), else the chain."""
    return boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
