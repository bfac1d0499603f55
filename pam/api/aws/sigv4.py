"""AWS Signature Version 4 for JSON POST requests (no query string, signed body)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Final, NamedTuple


class FrozenCredentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode("utf-8"), "sha256")


#: Header sets remembered by a signer (a client sends one or two).
MAX_LAYOUTS: Final = 64


class _Layout(NamedTuple):
    """The canonical headers of a header set around the one that changes (``x-amz-date``)."""

    before: str
    after: str
    signed_headers: str

    @classmethod
    def of(cls, signed: Mapping[str, str]) -> _Layout:
        names = sorted(signed)
        lines = [f"{name}:{' '.join(signed[name].split())}\n" for name in names]
        at = names.index("x-amz-date")
        return cls("".join(lines[:at]), "".join(lines[at + 1 :]), ";".join(names))


class SigV4Signer:
    """Signs requests of one service in one region. Caches the day's signing key, the second's date and
    the canonical form of each header set."""

    def __init__(self, service: str, region: str) -> None:
        self.service = service
        self.region = region
        self._key_for: tuple[str, str] | None = None
        self._key = b""
        self._second = -1
        self._second_text = ""
        self._layouts: dict[tuple[tuple[tuple[str, str], ...], str, str | None], _Layout] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key_for != (secret, day):
            key = _hmac(("AWS4" + secret).encode("utf-8"), day)
            key = _hmac(key, self.region)
            key = _hmac(key, self.service)
            self._key = _hmac(key, "aws4_request")
            self._key_for = (secret, day)
        return self._key

    def _amz_date(self, now: datetime | None) -> str:
        """``YYYYMMDDTHHMMSSZ`` of ``now`` (default: the current second, formatted once per second)."""
        if now is not None:
            return now.strftime("%Y%m%dT%H%M%SZ")
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._second_text

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
        amz_date = self._amz_date(now)
        day = amz_date[:8]
        signed = dict(headers)
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        layout_key = (tuple(headers.items()), host, credentials.token)
        layout = self._layouts.get(layout_key)
        if layout is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            layout = self._layouts[layout_key] = _Layout.of(signed)
        canonical_headers = f"{layout.before}x-amz-date:{amz_date}\n{layout.after}"
        signed_headers = layout.signed_headers
        canonical = "\n".join(("POST", path, "", canonical_headers, signed_headers, hashlib.sha256(body).hexdigest()))
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        )
        signature = hmac.digest(self._signing_key(credentials.secret_key, day), to_sign.encode(), "sha256").hex()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return signed
