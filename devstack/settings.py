"""devstack settings: explicit argument > environment (``DEVSTACK_*``) > settings file > default."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clickstream.settings import LayeredSettings

ENV_PREFIX: Final = "DEVSTACK_"
#: Environment variable naming an optional YAML settings file.
SETTINGS_FILE_ENV: Final = "DEVSTACK_SETTINGS_FILE"
#: Where ``npm ci`` (``.ci/install-node-deps.sh``) puts kinesis-mock.
DEFAULT_KINESIS_LOCAL_DIR: Final = Path(__file__).resolve().parent / "node" / "node_modules" / "kinesis-local"
LOOPBACK_PRELOAD: Final = Path(__file__).resolve().parent / "node" / "loopback.cjs"


class DevStackSettings(LayeredSettings):
    """Where the stack lives, what it listens on, and what it creates for the demo."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    settings_file_env: ClassVar[str] = SETTINGS_FILE_ENV

    state_dir: Path = Field(Path(".devstack"), description="pids, ports, logs, env.sh")
    host: str = Field("127.0.0.1", description="address every service binds and every URL names")
    edge_port: int = Field(4566, ge=0, le=65535, description="the LocalStack-style edge; 0 = any free port")

    region: str = "us-east-1"
    access_key_id: str = "test"
    secret_access_key: str = "test"  # noqa: S105 - the local stack's dummy credentials

    stream_name: str = Field("clickstream", min_length=1, max_length=128)
    shards: int = Field(4, ge=1, le=200)
    tracking_id: str = Field("local-tracker", min_length=1, max_length=256)
    application_name: str = Field("clickstream-to-personalize", min_length=1)
    datasets_bucket: str = Field("patron-datasets", min_length=3, max_length=63)
    dead_letter_bucket: str = Field("patron-dead-letters", min_length=3, max_length=63)
    dead_letter_prefix: str = "dead-letters"
    similar_games_table: str = Field("similar-games", min_length=3, max_length=255)

    aws_upstream: str | None = Field(
        None,
        description="a running LocalStack edge (e.g. http://127.0.0.1:4566): the edge sends every AWS "
        "service to it instead of starting kinesis-mock and moto; Personalize still goes to our emulator",
    )
    personalize: bool = Field(True, description="start the Personalize emulator")
    personalize_command: list[str] | None = Field(
        None, description="argv that runs the emulator (default: this python -m devstack.personalize)"
    )
    node: str = Field("node", description="the Node.js executable for kinesis-mock")
    kinesis_local_dir: Path = Field(DEFAULT_KINESIS_LOCAL_DIR, description="the kinesis-local package folder")
    kinesis_log_level: Literal["ERROR", "WARN", "INFO", "DEBUG", "TRACE"] = "WARN"
    kinesis_operation_delay: str = Field("20ms", description="kinesis-mock's CREATING->ACTIVE etc. delays")
    kinesis_persist: bool = Field(False, description="kinesis-mock keeps its data in the state dir")
    kinesis_shard_limit: int = Field(200, ge=1)

    startup_timeout: float = Field(60.0, gt=0, description="seconds each service gets to answer")
    stop_timeout: float = Field(10.0, gt=0, description="seconds between SIGTERM and SIGKILL")

    @field_validator("aws_upstream")
    @classmethod
    def _upstream_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith("http://"):
            raise ValueError("must be an http:// URL, e.g. http://127.0.0.1:4566")
        return value.rstrip("/")

    @field_validator("kinesis_operation_delay")
    @classmethod
    def _duration(cls, value: str) -> str:
        number = value.rstrip("mns").strip()
        if not number.isdigit() or not value.endswith(("ms", "s")):
            raise ValueError("a duration such as 20ms or 1s")
        return value

    @model_validator(mode="after")
    def _distinct_buckets(self) -> DevStackSettings:
        if self.datasets_bucket == self.dead_letter_bucket:
            raise ValueError("datasets_bucket and dead_letter_bucket must differ")
        return self

    def emulator_command(self) -> list[str]:
        return list(self.personalize_command or [sys.executable, "-m", "devstack.personalize"])
