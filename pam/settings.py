"""PAM settings: explicit argument > environment (PAM_*) > settings file (PAM_SETTINGS_FILE) > default.

AWS endpoints, region and credentials are not settings of ours: the SDK reads ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_REGION`` and the credential chain itself. The Personalize campaign
and filter ARNs come from their own settings or, for the ones not given, from the outputs file that
``batch personalize apply --outputs`` writes (``{"campaigns": {"popularity", "trending", "for_you",
"sims"}, "filters": {"unavailable"}}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clickstream.settings import LayeredSettings, check_database_url, settings_problems

ENV_PREFIX: Final = "PAM_"
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV: Final = "PAM_SETTINGS_FILE"
#: The embedded platform database of a developer machine.
DEFAULT_DATABASE_URL: Final = "sqlite:///./.data/platform.db"
#: Where ``batch datasets`` writes the catalog with the devstack's defaults.
DEFAULT_CATALOG_URL: Final = "s3://patron-datasets/datasets/games.json"
#: Algorithms a token may be signed with; ``none`` is never accepted.
SUPPORTED_ALGORITHMS: Final = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
_ARN = re.compile(r"^arn:aws[a-z-]*:personalize:[a-z0-9-]*:\d{12}:(campaign|filter)/[A-Za-z0-9_.-]+$")

DependencyCalls = Literal["parallel", "sequential"]


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


class PamSettings(LayeredSettings):
    """What PAM needs to know: the platform database, the lobby service and its dependencies."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    settings_file_env = SETTINGS_FILE_ENV

    database_url: SecretStr = Field(
        SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the platform database: sqlite:///path or postgresql://user:pass@host/db",
    )

    # --- `pam serve` ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="address `pam serve` listens on")
    port: int = Field(8080, ge=0, le=65535, description="port `pam serve` listens on")
    workers: int = Field(1, ge=1, le=64, description="processes `pam serve` runs, each a full copy of the service")
    catalog_url: str = Field(
        DEFAULT_CATALOG_URL, description="the games catalog (games.json): s3://bucket/key or a local file path"
    )
    catalog_refresh_seconds: float = Field(30.0, gt=0, description="how often the catalog is checked for changes")
    catalog_max_shrink: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a new catalog that lost more than this fraction of the games shown is refused, the current"
        " one kept (1: only an empty catalog is refused; a restarted service takes any non-empty one)",
    )
    similar_table: str = Field("similar-games", min_length=3, max_length=255, description="DynamoDB table")
    similar_key: str = Field("gameId", min_length=1, description="partition key attribute of the similar table")
    popular_campaign_arn: str | None = Field(None, description="campaign of aws-popularity-count")
    trending_campaign_arn: str | None = Field(None, description="campaign of aws-trending-now")
    for_you_campaign_arn: str | None = Field(None, description="campaign of aws-user-personalization-v2")
    unavailable_filter_arn: str | None = Field(None, description="filter excluding unavailable games (for you)")
    outputs_file: Path | None = Field(None, description="JSON written by `batch personalize apply --outputs`")
    section_size: int = Field(12, ge=1, le=100, description="games per lobby section")
    candidates: int = Field(40, ge=1, le=500, description="numResults asked of a campaign for one section")
    popular_candidates: int = Field(100, ge=1, le=500, description="numResults asked of the popular campaign")
    dependency_calls: DependencyCalls = Field(
        "parallel", description="parallel: all at once; sequential: one after another (for comparison)"
    )
    request_deadline_ms: float = Field(250.0, gt=0, description="the whole lobby answers within this")
    database_timeout_ms: float = Field(100.0, gt=0, description="timeout of the platform database query")
    similar_timeout_ms: float = Field(100.0, gt=0, description="timeout of the DynamoDB call")
    personalize_timeout_ms: float = Field(150.0, gt=0, description="timeout of one GetRecommendations call")
    fallback_refresh_seconds: float = Field(30.0, gt=0, description="how often popular/trending are re-read")
    fallback_user_id: str = Field("pam-lobby-fallback", min_length=1, description="user of the background reads")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open a breaker")
    breaker_failure_rate: float = Field(0.5, gt=0, le=1, description="failure rate in the window that opens it")
    breaker_window: int = Field(20, ge=1, description="calls the failure rate is computed over")
    breaker_min_calls: int = Field(10, ge=1, description="calls in the window before the rate counts")
    breaker_cooldown_seconds: float = Field(5.0, gt=0, description="an open breaker waits this long, then probes")
    aws_max_connections: int = Field(128, ge=1, le=4096, description="connections per AWS endpoint")
    database_threads: int = Field(8, ge=1, le=256, description="threads running platform database queries")

    # --- tokens --------------------------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret (development), at least 32 characters")
    jwt_public_key: SecretStr | None = Field(None, description="PEM public key (RS256/ES256), or a file path")
    jwt_private_key: SecretStr | None = Field(None, description="PEM private key for `pam token`, or a file path")
    jwt_algorithms: str | None = Field(None, description="allowed algorithms, comma-separated (default: by key)")
    jwt_issuer: str = Field("pam", min_length=1, description="required `iss` of tokens")
    jwt_audience: str = Field("pam-lobby", min_length=1, description="required `aud` of tokens")
    jwt_leeway_seconds: float = Field(10.0, ge=0, le=300, description="clock skew allowed on exp/nbf/iat")
    jwt_admin_role: str = Field("admin", min_length=1, description="role that may use the admin operations")
    jwt_roles_claim: str = Field("roles", min_length=1, description="claim holding the token's roles")

    @field_validator("database_url")
    @classmethod
    def _url_parses(cls, value: SecretStr) -> SecretStr:
        return check_database_url(value)

    @field_validator("catalog_url")
    @classmethod
    def _catalog_url(cls, value: str) -> str:
        if value.startswith("s3://"):
            bucket, _, key = value[5:].partition("/")
            if not bucket or not key:
                raise ValueError(f"an S3 catalog URL is s3://bucket/key, got {value!r}")
        elif "://" in value:
            raise ValueError(f"the catalog is s3://bucket/key or a file path, got {value!r}")
        return value

    @field_validator("popular_campaign_arn", "trending_campaign_arn", "for_you_campaign_arn", "unavailable_filter_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value is not None and not _ARN.fullmatch(value):
            raise ValueError(f"not a Personalize campaign or filter ARN: {value!r}")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("an HMAC secret must have at least 32 characters")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names:
            raise ValueError("at least one algorithm")
        unknown = [name for name in names if name not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported algorithms {unknown}; supported: {list(SUPPORTED_ALGORITHMS)}")
        return ",".join(names)

    @model_validator(mode="after")
    def _timeouts(self) -> PamSettings:
        if self.breaker_min_calls > self.breaker_window:
            raise ValueError("breaker_min_calls must not exceed breaker_window")
        return self


@dataclass(frozen=True, slots=True)
class PersonalizeArns:
    """The campaigns and the filter the lobby asks; None: not configured."""

    popular: str | None = None
    trending: str | None = None
    for_you: str | None = None
    unavailable_filter: str | None = None


def personalize_arns(settings: PamSettings) -> PersonalizeArns:
    """The ARNs from the settings, the missing ones from ``outputs_file``; :class:`SettingsError` when the
    file is unreadable or holds something that is not an ARN."""
    from_file: dict[str, str | None] = {}
    if settings.outputs_file is not None:
        name = f"{ENV_PREFIX}OUTPUTS_FILE"
        try:
            data = json.loads(settings.outputs_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{name}: unreadable outputs file {settings.outputs_file}: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{name}: {settings.outputs_file} is not a JSON object")
        campaigns = data.get("campaigns") or {}
        filters = data.get("filters") or {}
        if not isinstance(campaigns, dict) or not isinstance(filters, dict):
            raise SettingsError(f"{name}: 'campaigns' and 'filters' must be objects")
        for field, value in (
            ("popular", campaigns.get("popularity")),
            ("trending", campaigns.get("trending")),
            ("for_you", campaigns.get("for_you")),
            ("unavailable_filter", filters.get("unavailable")),
        ):
            if value is not None and (not isinstance(value, str) or not _ARN.fullmatch(value)):
                raise SettingsError(f"{name}: {field} is not a Personalize ARN: {value!r}")
            from_file[field] = value
    return PersonalizeArns(
        popular=settings.popular_campaign_arn or from_file.get("popular"),
        trending=settings.trending_campaign_arn or from_file.get("trending"),
        for_you=settings.for_you_campaign_arn or from_file.get("for_you"),
        unavailable_filter=settings.unavailable_filter_arn or from_file.get("unavailable_filter"),
    )


def load_settings(**explicit: object) -> PamSettings:
    """Settings with ``explicit`` values (None means "not given") on top; :class:`SettingsError` names
    the setting that is wrong."""
    given = {name: value for name, value in explicit.items() if value is not None}
    try:
        return PamSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(f"invalid PAM settings: {settings_problems(exc, ENV_PREFIX)}") from None
