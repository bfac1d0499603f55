"""Worker settings: explicit argument > environment (STREAM_WORKER_*) > settings file > default."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clickstream.settings import LayeredSettings
from stream_worker.errors import FatalConfigurationError

ENV_PREFIX = "STREAM_WORKER_"
#: Default of ``high_water_bytes``: the raw bytes one shard's child may hold in flight.
DEFAULT_HIGH_WATER_BYTES = 64 * 1024 * 1024
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV = "STREAM_WORKER_SETTINGS_FILE"


class WorkerSettings(LayeredSettings):
    """Everything the record processor, replay and the supervisor need to know."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    settings_file_env = SETTINGS_FILE_ENV

    tracking_id: str = Field("", description="Personalize event tracker id (required to deliver)")
    stream_name: str = "clickstream"
    application_name: str = "clickstream-to-personalize"
    region: str | None = None
    dead_letter_url: str = Field(
        "dead-letters", description="s3://bucket/prefix, or a local folder for dead-letter JSON lines"
    )
    mapping_file: Path | None = None

    linger_seconds: float = Field(1.0, gt=0, le=60)
    backlog_linger_seconds: float = Field(
        20.0, gt=0, le=300, description="linger while the shard is behind (backlog): batching beats latency"
    )
    backlog_threshold_seconds: float = Field(
        10.0, ge=0, description="the shard is in backlog when KCL's millisBehindLatest exceeds this"
    )
    initial_concurrency: int = Field(4, ge=1, le=256)
    max_concurrency: int = Field(32, ge=1, le=256)
    high_water_events: int = Field(10_000, ge=10)
    high_water_bytes: int = Field(
        DEFAULT_HIGH_WATER_BYTES,
        ge=1024 * 1024,
        description="raw bytes in flight (events not yet delivered, dead letters not yet written) above which "
        "process_records blocks, as for high_water_events",
    )
    checkpoint_interval_seconds: float = Field(5.0, ge=0)
    retry_base_seconds: float = Field(0.05, gt=0)
    retry_cap_seconds: float = Field(5.0, gt=0)
    call_timeout_seconds: float = Field(10.0, gt=0)
    shutdown_grace_seconds: float = Field(15.0, ge=0)
    dedup_memory: int = Field(200_000, ge=1)
    dead_letter_batch_size: int = Field(500, ge=1)
    dead_letter_max_age_seconds: float = Field(2.0, gt=0)

    # -- `stream-worker run`: the KCL MultiLangDaemon it starts (see stream_worker.kcl_properties) --
    kcl_kinesis_endpoint: str | None = Field(
        None, description="Kinesis endpoint of the KCL daemon only (it needs HTTP/2); unset: AWS's own"
    )
    kcl_dynamodb_endpoint: str | None = Field(None, description="DynamoDB endpoint of the KCL daemon only")
    kcl_credentials_provider: str | None = Field(
        None,
        description="KCL AwsCredentialsProvider; default: EnvironmentVariableCredentialsProvider when the "
        "KCL endpoints are local (plain http), else DefaultCredentialsProvider (IRSA on EKS)",
    )
    worker_id: str | None = Field(None, min_length=1, description="KCL worker id; default $POD_NAME, else host-pid")
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    max_records: int = Field(10_000, ge=1, le=10_000, description="records per GetRecords call")
    idle_time_between_reads_millis: int = Field(1000, ge=0)
    failover_time_millis: int = Field(10_000, ge=1)
    shard_sync_interval_millis: int = Field(60_000, ge=1)
    parent_shard_poll_interval_millis: int = Field(10_000, ge=1)
    shutdown_grace_millis: int = Field(
        20_000, gt=0, description="how long KCL's graceful shutdown may take (must exceed shutdown_grace_seconds)"
    )
    kcl_log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "INFO"
    kcl_log_levels: str = Field(
        "",
        description="levels of single KCL loggers over kcl_log_level: comma-separated logger=LEVEL, e.g. "
        "software.amazon.kinesis.retrieval.polling=DEBUG",
    )
    java: str = Field("java", min_length=1, description="the java executable that runs the daemon")
    kcl_jars_dir: Path | None = Field(None, description="the KCL jars; default: those of amazon_kclpy")
    run_dir: Path | None = Field(None, description="where the daemon's files go; default: a new temporary folder")
    metrics_address: str = Field("0.0.0.0", description="address of /metrics, /healthz, /readyz")  # noqa: S104
    metrics_port: int = Field(9102, ge=1, le=65535)
    stuck_after_seconds: float = Field(
        300.0, gt=0, description="a shard inside process_records for longer than this makes the worker not ready"
    )

    @field_validator("kcl_kinesis_endpoint", "kcl_dynamodb_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError("must be an http:// or https:// URL with no path, e.g. http://127.0.0.1:4567")
        return value

    @field_validator("kcl_log_levels")
    @classmethod
    def _logger_levels(cls, value: str) -> str:
        levels = parse_logger_levels(value)
        return ",".join(f"{name}={level}" for name, level in levels.items())

    def kcl_logger_levels(self) -> dict[str, str]:
        """``kcl_log_levels`` as logger name -> level (ERROR, WARN, INFO, DEBUG or TRACE)."""
        return parse_logger_levels(self.kcl_log_levels)

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.initial_concurrency > self.max_concurrency:
            raise ValueError("initial_concurrency must not exceed max_concurrency")
        if self.retry_base_seconds > self.retry_cap_seconds:
            raise ValueError("retry_base_seconds must not exceed retry_cap_seconds")
        return self

    def require_tracking_id(self) -> str:
        if not self.tracking_id:
            raise FatalConfigurationError(
                f"{ENV_PREFIX}TRACKING_ID is not set: the Personalize event tracker id is required"
            )
        return self.tracking_id


_LOGGER_NAME = re.compile(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*")
_LOGGER_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG", "TRACE")


def parse_logger_levels(value: str) -> dict[str, str]:
    """``"a.b=DEBUG, c=warn"`` -> ``{"a.b": "DEBUG", "c": "WARN"}``; ValueError naming a bad entry."""
    levels: dict[str, str] = {}
    for entry in value.split(","):
        if not entry.strip():
            continue
        name, sep, level = (part.strip() for part in entry.partition("="))
        if not sep or not _LOGGER_NAME.fullmatch(name) or level.upper() not in _LOGGER_LEVELS:
            raise ValueError(
                f"{entry.strip()!r} is not logger=LEVEL (a Java logger name; LEVEL one of {', '.join(_LOGGER_LEVELS)})"
            )
        levels[name] = level.upper()
    return levels


def load_settings(**overrides: Any) -> WorkerSettings:
    """Settings from ``overrides``, the environment and the settings file; a wrong one fails clearly.

    Raises FatalConfigurationError whose message names each bad setting as its environment variable.
    """
    explicit = {k: v for k, v in overrides.items() if v is not None}
    settings_file = os.environ.get(SETTINGS_FILE_ENV)
    if settings_file and not Path(settings_file).is_file():
        raise FatalConfigurationError(f"{SETTINGS_FILE_ENV}={settings_file} is not a readable file")
    try:
        return WorkerSettings(**explicit)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"]) or "settings"
            label = f"{ENV_PREFIX}{name.upper()}" if error["loc"] else "settings"
            problems.append(f"{label}: {error['msg']}")
        raise FatalConfigurationError("invalid stream worker settings: " + "; ".join(problems)) from exc
