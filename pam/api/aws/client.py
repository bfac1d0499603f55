"""JSON calls to one AWS service: endpoint and credentials from botocore, requests signed and sent here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import botocore.session
import orjson
from botocore.credentials import Credentials, RefreshableCredentials

from pam.api.aws.http import HttpEndpoint, HttpError
from pam.api.aws.sigv4 import FrozenCredentials, SigV4Signer

log = logging.getLogger("pam.api")

#: How long frozen credentials are used before asking the provider again, in the background (botocore
#: refreshes role credentials 15 minutes before they expire).
CREDENTIALS_TTL_SECONDS: Final = 60.0
#: How long frozen role credentials are used while re-reads fail. botocore hands out role credentials
#: with 10 minutes left at least (within 10 minutes of their expiry a failed refresh is an error).
CREDENTIALS_MAX_AGE_SECONDS: Final = 300.0
#: The wait after a failed read before the next one (calls without valid credentials fail meanwhile).
CREDENTIALS_RETRY_SECONDS: Final = 5.0
DEFAULT_REGION: Final = "us-east-1"


class AwsCallError(Exception):
    """An AWS call failed: ``code`` is the service's error code, or ``ConnectionError``."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
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
    """Frozen credentials from the botocore chain, read off the event loop.

    Resolving the chain and refreshing role credentials block (IRSA's web identity is an STS call, the
    instance and container providers are HTTP calls), so botocore is only ever asked on a thread, one
    read at a time. Callers sign with the cached frozen credentials (:meth:`current`) while they are
    valid; a re-read starts in the background every :data:`CREDENTIALS_TTL_SECONDS` (botocore refreshes
    role credentials when they near their expiry). Only without valid credentials (the first call, or
    after :data:`CREDENTIALS_MAX_AGE_SECONDS` of failed re-reads) does a call wait for the read
    (:meth:`wait`), within its own timeout. A failed read is an :class:`AwsCallError`, and the next
    read waits :data:`CREDENTIALS_RETRY_SECONDS`. Static credentials (keys in the environment or a
    file) are read once and never again. One event loop.
    """

    def __init__(self, session: botocore.session.Session, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self._clock = clock
        self._credentials: Credentials | None = None
        self._frozen: FrozenCredentials | None = None
        #: Static credentials: never re-read.
        self._static = False
        #: When to start the next read, until when ``_frozen`` may be used, when a failed read may be retried.
        self._refresh_at = 0.0
        self._valid_until = 0.0
        self._retry_at = 0.0
        #: The last read's failure (code, message); None after a good read.
        self._failure: tuple[str, str] | None = None
        self._reading: asyncio.Task[None] | None = None

    def current(self) -> FrozenCredentials | None:
        """The cached credentials while they are valid, else None (then :meth:`wait`); starts a background
        re-read when one is due. Never blocks; called on the event loop."""
        frozen = self._frozen
        if frozen is None or self._static:
            return frozen
        now = self._clock()
        if now >= self._refresh_at and self._reading is None and now >= self._retry_at:
            self._reading = self._start_read(now)
        return frozen if now < self._valid_until else None

    async def wait(self) -> FrozenCredentials:
        """Valid credentials, after the read under way (or a new one) when there are none: cancelling the
        caller (its timeout) leaves the read running. :class:`AwsCallError` when the read fails, at once
        while the last failure's retry delay runs."""
        frozen = self.current()
        if frozen is not None:
            return frozen
        reading = self._reading
        if reading is None:
            now = self._clock()
            if now < self._retry_at:
                raise self._error()
            reading = self._reading = self._start_read(now)
        await asyncio.shield(reading)
        frozen = self.current()
        if frozen is None:
            raise self._error()
        return frozen

    async def prefetch(self) -> None:
        """Read the credentials before the first call needs them (a failure is logged and left to the calls)."""
        with contextlib.suppress(AwsCallError):
            await self.wait()

    def _error(self) -> AwsCallError:
        code, message = self._failure or ("NoCredentials", "no valid AWS credentials")
        return AwsCallError(code, message)

    def _start_read(self, now: float) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._read(now), name="pam-aws-credentials")

    async def _read(self, started: float) -> None:
        try:
            credentials, frozen = await asyncio.to_thread(self._read_blocking)
        except Exception as exc:
            if isinstance(exc, AwsCallError):
                self._failure = (exc.code, exc.message)
            else:
                self._failure = ("CredentialsError", f"cannot read AWS credentials: {type(exc).__name__}: {exc}")
            self._retry_at = self._clock() + CREDENTIALS_RETRY_SECONDS
            usable = self._frozen is not None and self._clock() < self._valid_until
            log.warning(
                "AWS credentials read failed (%s; next try in %.0f s): %s",
                "the cached ones are used meanwhile" if usable else "no valid credentials",
                CREDENTIALS_RETRY_SECONDS,
                self._failure[1][:300],
            )
        else:
            self._credentials = credentials
            self._frozen = frozen
            self._failure = None
            if isinstance(credentials, RefreshableCredentials):
                self._refresh_at = started + CREDENTIALS_TTL_SECONDS
                self._valid_until = started + CREDENTIALS_MAX_AGE_SECONDS
            else:
                self._static = True
        finally:
            self._reading = None

    def _read_blocking(self) -> tuple[Credentials, FrozenCredentials]:
        """On a thread: the chain's credentials (resolved the first time) and their frozen values."""
        credentials = self._credentials
        if credentials is None:
            credentials = self._session.get_credentials()
        if credentials is None:
            raise AwsCallError("NoCredentials", "no AWS credentials found")
        frozen = credentials.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            raise AwsCallError("NoCredentials", "incomplete AWS credentials")
        return credentials, FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)


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
        credentials = self._credentials.current()
        if credentials is None:
            credentials = await self._credentials.wait()
        signed = self._signer.sign(
            credentials, host=self._endpoint.authority, path=full_path, headers=headers, body=body
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
