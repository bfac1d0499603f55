"""Which AWS service a request is for, read the way LocalStack's edge reads it: from its signature.

Pure functions, no I/O: the edge calls them for every request and the unit tests call them directly.

The order of evidence:

1. the SigV4 (or SigV4a) ``Authorization`` header's credential scope,
   ``Credential=AKID/DATE/REGION/SERVICE/aws4_request`` (SigV4a has no region: ``AKID/DATE/SERVICE/...``);
2. a presigned URL's ``X-Amz-Credential`` query parameter, same scope;
3. SigV2 (``Authorization: AWS AKID:sig`` or ``AWSAccessKeyId=`` in the query), which only S3 still
   accepts;
4. for unsigned requests, the ``X-Amz-Target`` prefix (``Kinesis_20131202.PutRecord``);
5. a few path prefixes of our own emulator's inspection API.

Anything else is ``None``, and the edge sends it to its default upstream (moto), as LocalStack would send
it to S3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs

#: ``X-Amz-Target`` prefixes (the part before the dot) of unsigned requests -> signing service name.
TARGET_PREFIXES: Final[Mapping[str, str]] = {
    "Kinesis_20131202": "kinesis",
    "DynamoDB_20120810": "dynamodb",
    "DynamoDB_20111205": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodb",
    "AmazonPersonalize": "personalize",
}

#: Paths that only our Personalize emulator serves (its inspection/fault-injection API).
PERSONALIZE_PATH_PREFIXES: Final = ("/_emulator/",)

_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")
_SIGV4_SCHEMES: Final = ("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")


def service_from_credential_scope(credential: str) -> str | None:
    """``AKID/20240101/us-east-1/kinesis/aws4_request`` -> ``kinesis`` (lower case); ``None`` if malformed."""
    parts = credential.strip().split("/")
    # SigV4: AKID, date, region, service, terminator; SigV4a: AKID, date, service, terminator.
    if len(parts) not in (4, 5) or parts[-1] != "aws4_request":
        return None
    service = parts[-2].strip().lower()
    return service or None


def service_from_authorization(authorization: str) -> str | None:
    """The signing service named by an ``Authorization`` header value, or ``None``."""
    value = authorization.strip()
    if value.startswith(_SIGV4_SCHEMES):
        match = _CREDENTIAL.search(value)
        return service_from_credential_scope(match.group(1)) if match else None
    if value.startswith("AWS ") and ":" in value:
        return "s3"  # SigV2: nothing but S3 still takes it
    return None


def service_from_query(query: str) -> str | None:
    """The service named by a presigned URL's query string (``X-Amz-Credential``), or ``None``."""
    if not query or ("Credential" not in query and "AWSAccessKeyId" not in query):
        return None
    params = parse_qs(query, keep_blank_values=True)
    for key, values in params.items():
        if key.lower() == "x-amz-credential" and values:
            return service_from_credential_scope(values[0])
    if "AWSAccessKeyId" in params and "Signature" in params:
        return "s3"  # SigV2 presigned URL
    return None


def service_from_target(target: str) -> str | None:
    """``Kinesis_20131202.PutRecords`` -> ``kinesis``; ``None`` for prefixes we do not know."""
    prefix = target.strip().split(".", 1)[0]
    if prefix in TARGET_PREFIXES:
        return TARGET_PREFIXES[prefix]
    return next((svc for known, svc in TARGET_PREFIXES.items() if prefix.startswith(known)), None)


def detect_service(path: str, query: str, headers: Mapping[str, str]) -> str | None:
    """The signing name of the service a request is for, or ``None`` when nothing says.

    ``headers`` must have lower-case keys (HTTP header names are case-insensitive; the edge lower-cases
    them once).
    """
    authorization = headers.get("authorization")
    if authorization:
        service = service_from_authorization(authorization)
        if service:
            return service
    service = service_from_query(query)
    if service:
        return service
    target = headers.get("x-amz-target")
    if target:
        service = service_from_target(target)
        if service:
            return service
    if path.startswith(PERSONALIZE_PATH_PREFIXES):
        return "personalize"
    return None


@dataclass(frozen=True)
class RouteTable:
    """Maps a detected service to the name of an upstream; anything unmapped goes to ``default``."""

    routes: Mapping[str, str] = field(default_factory=dict)
    default: str = "moto"

    def upstream_for(self, service: str | None) -> str:
        if service is None:
            return self.default
        return self.routes.get(service, self.default)


#: Our stack: Kinesis to kinesis-mock, Personalize (all three APIs sign as ``personalize``) to the
#: emulator, everything else (DynamoDB, DynamoDB Streams, S3, STS, IAM, ...) to moto.
DEFAULT_ROUTES: Final = RouteTable(routes={"kinesis": "kinesis", "personalize": "personalize"}, default="moto")
