"""Worker settings: explicit argument > environment (STREAM_WORKER_*) > settings file > default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from stream_worker.errors import FatalConfigurationError

ENV_PREFIX = "STREAM_WORKER_"
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV = "STREAM_WORKER_SETTINGS_FILE"


class WorkerSettings(BaseSettings):
    """Everything the record processor, replay and the supervisor need to know."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    tracking_id: str = Field("", description="Personalize event tracker id (required to deliver)")
    stream_name: str = "clickstream"
    application_name: str = "clickstream-to-personalize"
    region: str | None = None
    dead_letter_url: str = Field(
        "dead-letters", description="s3://bucket/prefix, or a local folder for dead-letter JSON lines"
    )
    mapping_file: Path | None = None

    linger_seconds: float = Field(1.0, gt=0, le=60)
    initial_concurrency: int = Field(4, ge=1, le=256)
    max_concurrency: int = Field(32, ge=1, le=256)
    high_water_events: int = Field(5000, ge=10)
    checkpoint_interval_seconds: float = Field(5.0, ge=0)
    retry_base_seconds: float = Field(0.05, gt=0)
    retry_cap_seconds: float = Field(5.0, gt=0)
    call_timeout_seconds: float = Field(10.0, gt=0)
    shutdown_grace_seconds: float = Field(15.0, ge=0)
    dedup_memory: int = Field(200_000, ge=1)
    dead_letter_batch_size: int = Field(500, ge=1)
    dead_letter_max_age_seconds: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.initial_concurrency > self.max_concurrency:
            raise ValueError("initial_concurrency must not exceed max_concurrency")
        if self.retry_base_seconds > self.retry_cap_seconds:
            raise ValueError("retry_base_seconds must not exceed retry_cap_seconds")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get(SETTINGS_FILE_ENV)
        if settings_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)

    def require_tracking_id(self) -> str:
        if not self.tracking_id:
            raise FatalConfigurationError(
                f"{ENV_PREFIX}TRACKING_ID is not set: the Personalize event tracker id is required"
            )
        return self.tracking_id


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
