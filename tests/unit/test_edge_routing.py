"""The edge's service detection: from real botocore signatures, presigned URLs, targets and paths."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
import pytest
from botocore import xform_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from devstack.edge import EdgeConfig, Upstream
from devstack.routing import (
    DEFAULT_ROUTES,
    RouteTable,
    detect_service,
    service_from_authorization,
    service_from_credential_scope,
    service_from_query,
    service_from_target,
)

CREDS = Credentials("test", "test")


def _signed_headers(signing_name: str, target: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url="http://127.0.0.1:4566/", data=b"{}", headers=headers)
    SigV4Auth(CREDS, signing_name, "us-east-1").add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    ("signing_name", "target", "expected"),
    [
        ("kinesis", "Kinesis_20131202.PutRecords", "kinesis"),
        ("dynamodb", "DynamoDB_20120810.GetItem", "dynamodb"),
        ("dynamodb", "DynamoDBStreams_20120810.GetRecords", "dynamodb"),
        ("s3", None, "s3"),
        ("personalize", "AmazonPersonalize.DescribeSolution", "personalize"),
        ("personalize", None, "personalize"),
        ("sts", None, "sts"),
    ],
)
def test_sigv4_authorization_names_the_service(signing_name: str, target: str | None, expected: str) -> None:
    headers = _signed_headers(signing_name, target)
    assert detect_service("/", "", headers) == expected


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected_upstream"),
    [
        ("kinesis", "ListStreams", {}, "kinesis"),
        ("dynamodb", "ListTables", {}, "moto"),
        ("dynamodbstreams", "ListStreams", {}, "moto"),
        ("s3", "ListBuckets", {}, "moto"),
        ("sts", "GetCallerIdentity", {}, "moto"),
        ("personalize", "ListDatasetGroups", {}, "personalize"),
        ("personalize-runtime", "GetRecommendations", {"campaignArn": "arn:x", "userId": "u"}, "personalize"),
        (
            "personalize-events",
            "PutEvents",
            {"trackingId": "t", "sessionId": "s", "eventList": [{"eventType": "play", "sentAt": 1}]},
            "personalize",
        ),
    ],
)
def test_real_boto3_requests_route_to_the_right_upstream(
    service: str, operation: str, params: dict[str, object], expected_upstream: str
) -> None:
    """Sign a request the way boto3 does for each client we use, and route it."""
    client = boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url="http://127.0.0.1:4566",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    captured: dict[str, AWSRequest] = {}

    def capture(request: AWSRequest, **_: object) -> None:
        captured["request"] = request
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        getattr(client, xform_name(operation))(**params)
    request = captured["request"]
    parts = urlsplit(str(request.url))
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    assert DEFAULT_ROUTES.upstream_for(detect_service(parts.path, parts.query, headers)) == expected_upstream


class _Captured(Exception):
    pass


def test_presigned_s3_url_sigv4_query() -> None:
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:4566",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(signature_version="s3v4"),
    )
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    parts = urlsplit(url)
    assert "X-Amz-Credential" in parts.query
    assert service_from_query(parts.query) == "s3"
    assert detect_service(parts.path, parts.query, {}) == "s3"


def test_presigned_sigv2_query_is_s3() -> None:
    assert service_from_query("AWSAccessKeyId=test&Expires=1&Signature=abc") == "s3"


def test_presigned_credential_of_another_service() -> None:
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2F20240101%2Fus-east-1%2Fkinesis%2Faws4_request"
    assert service_from_query(query) == "kinesis"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/Kinesis/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc",
            "kinesis",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/s3/aws4_request,SignedHeaders=host,Signature=",
            "s3",
        ),
        (
            "AWS4-ECDSA-P256-SHA256 Credential=AKID/20240101/s3/aws4_request, SignedHeaders=host, Signature=",
            "s3",
        ),
        ("AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", "s3"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/kinesis, Signature=abc", None),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc", None),
        ("Bearer abc", None),
        ("", None),
    ],
)
def test_service_from_authorization(header: str, expected: str | None) -> None:
    assert service_from_authorization(header) == expected


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("AKID/20240101/us-east-1/personalize/aws4_request", "personalize"),
        ("AKID/20240101/personalize/aws4_request", "personalize"),
        ("AKID/20240101/us-east-1/personalize/aws4_requestX", None),
        ("AKID/us-east-1/aws4_request", None),
        ("AKID/20240101/us-east-1//aws4_request", None),
    ],
)
def test_service_from_credential_scope(scope: str, expected: str | None) -> None:
    assert service_from_credential_scope(scope) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("Kinesis_20131202.PutRecord", "kinesis"),
        ("DynamoDB_20120810.PutItem", "dynamodb"),
        ("DynamoDBStreams_20120810.DescribeStream", "dynamodb"),
        ("AmazonPersonalize.CreateSolution", "personalize"),
        ("AmazonSQS.SendMessage", None),
        ("", None),
    ],
)
def test_unsigned_requests_route_by_target(target: str, expected: str | None) -> None:
    assert service_from_target(target) == expected
    assert detect_service("/", "", {"x-amz-target": target}) == expected


def test_authorization_wins_over_target() -> None:
    headers = _signed_headers("kinesis", "DynamoDB_20120810.GetItem")
    assert detect_service("/", "", headers) == "kinesis"


def test_emulator_inspection_paths_go_to_personalize() -> None:
    assert detect_service("/_emulator/health", "", {}) == "personalize"
    assert DEFAULT_ROUTES.upstream_for(detect_service("/_emulator/trackers", "", {})) == "personalize"


def test_unrecognised_requests_go_to_the_default_upstream() -> None:
    assert detect_service("/some-bucket/key", "", {}) is None
    assert DEFAULT_ROUTES.upstream_for(None) == "moto"
    assert DEFAULT_ROUTES.upstream_for("iam") == "moto"
    assert RouteTable(routes={"kinesis": "k"}, default="aws").upstream_for("s3") == "aws"


def test_edge_config_round_trip_and_validation() -> None:
    config = EdgeConfig(
        upstreams={
            "kinesis": Upstream("kinesis", "http://127.0.0.1:1", "/healthcheck"),
            "moto": Upstream("moto", "http://127.0.0.1:2"),
        },
        routes=RouteTable(routes={"kinesis": "kinesis"}, default="moto"),
        health_services={"kinesis": "kinesis", "s3": "moto"},
    )
    assert EdgeConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="personalize"):
        EdgeConfig(upstreams=config.upstreams, routes=DEFAULT_ROUTES)
    with pytest.raises(ValueError, match="http://"):
        EdgeConfig(upstreams={"moto": Upstream("moto", "https://127.0.0.1:2")}, routes=RouteTable())
