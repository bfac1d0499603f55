"""Bearer tokens (JWT): verified with the configured key, issued for demos by ``pam token``.

A token is accepted when its algorithm is on the allow-list (``none`` never is) and matches the key's
kind, its signature verifies, ``iss`` and ``aud`` are the configured ones and ``exp`` (required) has not
passed, with a small leeway. Its ``sub`` is the player; ``roles`` (configurable claim) may hold the admin
role. A verified token is remembered (by its exact text) until it expires, so the hot path verifies each
token once.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from pam.settings import PamSettings, SettingsError

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256"})
EC_ALGORITHMS: Final = frozenset({"ES256", "ES384"})
CACHE_SIZE: Final = 50_000
DEFAULT_TTL_SECONDS: Final = 3600


class AuthError(Exception):
    """The request carries no acceptable token (401); ``reason`` is safe to show."""

    def __init__(self, reason: str, *, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    expires_at: float


def _pem(value: str, setting: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode("ascii")
    try:
        return Path(text).expanduser().read_bytes()
    except OSError as exc:
        raise SettingsError(f"PAM_{setting}: neither a PEM key nor a readable file: {exc.strerror}") from None


def _key_algorithms(key: object) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return EC_ALGORITHMS
    raise SettingsError("a JWT key must be an RSA or EC key")


class TokenVerifier:
    """Verifies bearer tokens against the configured key(s); see the module docstring."""

    def __init__(self, settings: PamSettings, *, clock: Any = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, Any] = {}
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value().encode("utf-8")
            self._keys.update(dict.fromkeys(HMAC_ALGORITHMS, secret))
        if settings.jwt_public_key is not None:
            try:
                public = load_pem_public_key(_pem(settings.jwt_public_key.get_secret_value(), "JWT_PUBLIC_KEY"))
            except ValueError:
                raise SettingsError("PAM_JWT_PUBLIC_KEY: not a PEM public key") from None
            self._keys.update(dict.fromkeys(_key_algorithms(public), public))
        if not self._keys:
            raise SettingsError("PAM_JWT_SECRET or PAM_JWT_PUBLIC_KEY: no key to verify tokens with")
        if settings.jwt_algorithms is not None:
            allowed = frozenset(settings.jwt_algorithms.split(","))
        else:
            allowed = frozenset({"HS256"} & self._keys.keys()) | frozenset({"RS256", "ES256"} & self._keys.keys())
        usable = allowed & self._keys.keys()
        if not usable:
            raise SettingsError(f"PAM_JWT_ALGORITHMS: none of {sorted(allowed)} fits the configured key")
        self.algorithms = usable
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._roles_claim = settings.jwt_roles_claim
        self.admin_role = settings.jwt_admin_role
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`AuthError` when it is not acceptable."""
        known = self._cache.get(token)
        now = self._clock()
        if known is not None:
            if now < known.expires_at + self._leeway:
                return known
            del self._cache[token]
            raise AuthError("the token has expired")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise AuthError("the token's algorithm is not accepted")
        try:
            claims = jwt.decode(
                token,
                self._keys[algorithm],
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the token is not meant for this service") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token's issuer is not trusted") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise AuthError("the token is not valid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("the token has no subject")
        raw_roles = claims.get(self._roles_claim) or []
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        roles = frozenset(str(role) for role in raw_roles) if isinstance(raw_roles, list) else frozenset()
        principal = Principal(subject, roles, float(claims["exp"]))
        self._cache[token] = principal
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def is_admin(self, principal: Principal) -> bool:
        return self.admin_role in principal.roles


class TokenIssuer:
    """Signs tokens with the configured development secret (HS256) or private key (RS256/ES256)."""

    def __init__(self, settings: PamSettings, *, clock: Any = time.time) -> None:
        self._clock = clock
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._roles_claim = settings.jwt_roles_claim
        self._admin_role = settings.jwt_admin_role
        self._key: Any
        if settings.jwt_private_key is not None:
            try:
                private = load_pem_private_key(
                    _pem(settings.jwt_private_key.get_secret_value(), "JWT_PRIVATE_KEY"), password=None
                )
            except (ValueError, TypeError):
                raise SettingsError("PAM_JWT_PRIVATE_KEY: not an unencrypted PEM private key") from None
            self._key = private
            self.algorithm = "RS256" if _key_algorithms(private) is RSA_ALGORITHMS else "ES256"
        elif settings.jwt_secret is not None:
            self._key = settings.jwt_secret.get_secret_value()
            self.algorithm = "HS256"
        else:
            raise SettingsError("PAM_JWT_SECRET or PAM_JWT_PRIVATE_KEY: no key to sign tokens with")

    def issue(self, player_id: str, *, admin: bool = False, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": player_id,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "jti": uuid.uuid4().hex,
            self._roles_claim: [self._admin_role] if admin else [],
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm)
