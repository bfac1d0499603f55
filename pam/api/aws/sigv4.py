"""AWS Signature Version 4 for JSON POST requests (no query string, signed body)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple


class FrozenCredentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class SigV4Signer:
    """Signs requests of one service in one region. Caches the day's signing key."""

    def __init__(self, service: str, region: str) -> None:
        self.service = service
        self.region = region
        self._key_for: tuple[str, str] | None = None
        self._key = b""

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key_for != (secret, day):
            key = _hmac(("AWS4" + secret).encode("utf-8"), day)
            key = _hmac(key, self.region)
            key = _hmac(key, self.service)
            self._key = _hmac(key, "aws4_request")
            self._key_for = (secret, day)
        return self._key

    def sign(
        self,
        credentials: FrozenCredentials,
        *,
        host: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send: ``headers`` (lower-case names) plus host, x-amz-date, the session token
        and Authorization."""
        moment = now or datetime.now(UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = dict(headers)
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical_headers = "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names)
        signed_headers = ";".join(names)
        canonical = "\n".join(("POST", path, "", canonical_headers, signed_headers, hashlib.sha256(body).hexdigest()))
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        )
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256)
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature.hexdigest()}"
        )
        return signed
