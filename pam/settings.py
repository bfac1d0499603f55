"""PAM settings: explicit argument > environment (PAM_*) > settings file (PAM_SETTINGS_FILE) > default."""

from __future__ import annotations

import os
from typing import Final

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX: Final = "PAM_"
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV: Final = "PAM_SETTINGS_FILE"
#: The embedded platform database of a developer machine.
DEFAULT_DATABASE_URL: Final = "sqlite:///./.data/platform.db"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


class PamSettings(BaseSettings):
    """What PAM needs to know; only the platform database so far."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: SecretStr = Field(
        SecretStr(DEFAULT_DATABASE_URL),
        description="SQLAlchemy URL of the platform database: sqlite:///path or postgresql://user:pass@host/db",
    )

    @field_validator("database_url")
    @classmethod
    def _url_parses(cls, value: SecretStr) -> SecretStr:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value.get_secret_value())
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from None
        return value

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


def load_settings(**explicit: object) -> PamSettings:
    """Settings with ``explicit`` values (None means "not given") on top; :class:`SettingsError` names
    the setting that is wrong."""
    given = {name: value for name, value in explicit.items() if value is not None}
    try:
        return PamSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid PAM settings: {problems}") from None
