"""JSON calls to one AWS service: endpoint and credentials from botocore, requests signed and sent here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import botocore.session
import orjson
from botocore.credentials import Credentials

from pam.api.aws.http import HttpEndpoint, HttpError
from pam.api.aws.sigv4 import FrozenCredentials, SigV4Signer

#: How long frozen credentials are used before asking the provider again (it refreshes role credentials).
CREDENTIALS_TTL_SECONDS: Final = 60.0
DEFAULT_REGION: Final = "us-east-1"


class AwsCallError(Exception):
    """An AWS call failed: ``code`` is the service's error code, or ``ConnectionError``."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """Where and how to reach one service, as botocore resolves it."""

    endpoint_url: str
    region: str
    signing_name: str


def resolve_target(session: botocore.session.Session, service: str) -> ServiceTarget:
    """The endpoint, region and signing name botocore would use for ``service`` (``dynamodb``,
    ``personalize-runtime``): ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, the config file."""
    region = session.get_config_variable("region") or DEFAULT_REGION
    client = session.create_client(service, region_name=region)
    try:
        model = client.meta.service_model
        return ServiceTarget(
            endpoint_url=str(client.meta.endpoint_url),
            region=str(client.meta.region_name),
            signing_name=str(model.signing_name or model.endpoint_prefix),
        )
    finally:
        client.close()


class CredentialSource:
    """Frozen credentials from the botocore chain, re-read every :data:`CREDENTIALS_TTL_SECONDS`."""

    def __init__(self, session: botocore.session.Session) -> None:
        self._session = session
        self._credentials: Credentials | None = None
        self._frozen: FrozenCredentials | None = None
        self._until = 0.0

    def get(self) -> FrozenCredentials:
        now = time.monotonic()
        if self._frozen is None or now >= self._until:
            if self._credentials is None:
                self._credentials = self._session.get_credentials()
            if self._credentials is None:
                raise AwsCallError("NoCredentials", "no AWS credentials found")
            frozen = self._credentials.get_frozen_credentials()
            if not frozen.access_key or not frozen.secret_key:
                raise AwsCallError("NoCredentials", "incomplete AWS credentials")
            self._frozen = FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)
            self._until = now + CREDENTIALS_TTL_SECONDS
        return self._frozen


class AwsJsonClient:
    """POSTs JSON to one service and decodes the JSON answer; errors as :class:`AwsCallError`."""

    def __init__(
        self,
        target: ServiceTarget,
        credentials: CredentialSource,
        *,
        content_type: str,
        max_connections: int = 128,
        connect_timeout: float = 1.0,
    ) -> None:
        self.target = target
        self._credentials = credentials
        self._content_type = content_type
        self._endpoint = HttpEndpoint(
            target.endpoint_url, max_connections=max_connections, connect_timeout=connect_timeout
        )
        self._signer = SigV4Signer(target.signing_name, target.region)

    async def call(self, path: str, payload: dict[str, Any], *, target: str | None = None) -> dict[str, Any]:
        """POST ``payload`` to ``path`` (with ``X-Amz-Target: target`` for JSON 1.0/1.1 protocols)."""
        body = orjson.dumps(payload)
        headers = {"content-type": self._content_type}
        if target is not None:
            headers["x-amz-target"] = target
        full_path = self._endpoint.base_path + path
        signed = self._signer.sign(
            self._credentials.get(), host=self._endpoint.authority, path=full_path, headers=headers, body=body
        )
        try:
            answer = await self._endpoint.post(full_path, signed, body)
        except HttpError as exc:
            raise AwsCallError("ConnectionError", str(exc)) from None
        try:
            data = orjson.loads(answer.body) if answer.body else {}
        except ValueError:
            data = None
        if answer.status >= 300 or not isinstance(data, dict):
            code = answer.headers.get("x-amzn-errortype", "")
            message = ""
            if isinstance(data, dict):
                code = code or str(data.get("__type") or data.get("code") or "")
                message = str(data.get("message") or data.get("Message") or "")
            code = code.split(":", 1)[0].rsplit("#", 1)[-1] or f"HTTP{answer.status}"
            raise AwsCallError(code, message or f"status {answer.status}", answer.status)
        return data

    def close(self) -> None:
        self._endpoint.close()
