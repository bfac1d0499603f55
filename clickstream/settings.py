"""What the packages' settings have in common: the order of their sources and the way a wrong setting
is reported. Each package keeps its own settings class, prefix and error type.

Order: explicit argument > environment (``<PREFIX>*``) > the YAML file named by ``<PREFIX>SETTINGS_FILE``
> default.
"""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, YamlConfigSettingsSource


class LayeredSettings(BaseSettings):
    """A settings class whose sources are the explicit arguments, the environment and an optional YAML
    file named by the environment variable :attr:`settings_file_env` (no .env file, no secrets dir)."""

    #: Environment variable naming the optional YAML settings file; set by each subclass.
    settings_file_env: ClassVar[str] = ""

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
        settings_file = os.environ.get(cls.settings_file_env) if cls.settings_file_env else None
        if settings_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)


def settings_problems(exc: ValidationError, prefix: str) -> str:
    """Every error of ``exc`` as ``<PREFIX><FIELD>: message``, so that the message names the variable to fix."""
    return "; ".join(
        f"{prefix}{'_'.join(str(part) for part in error['loc']).upper() or 'SETTINGS'}: {error['msg']}"
        for error in exc.errors()
    )


def check_database_url(value: SecretStr) -> SecretStr:
    """A field validator's body: ``value`` must parse as a SQLAlchemy URL (the URL itself is never shown)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value.get_secret_value())
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    return value
